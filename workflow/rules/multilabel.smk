# The multi-label task's shared rules (MULTILABEL_SPEC 2-4, 9): the dataset and its label tables,
# the label text classifier, the tile views, the evaluation of every stage and the summary. The
# methods' rules are multilabel_cdul.smk, multilabel_decoder.smk and multilabel_openvocab.smk; the
# named input functions and constants of all four are in multilabel_common.smk. Each rule's params
# carry only its slice of `multilabel`, so changing `multilabel.pseudo.zeta` reruns
# init_pseudolabels onward and never embed_tiles.


localrules:
    summarize_multilabel,


rule prepare_multilabel:
    output:
        manifest="results/{mldataset}/manifest.parquet",
        labels="results/{mldataset}/labels.parquet",
        label_set="results/{mldataset}/label_set.parquet",
    log:
        "logs/prepare_multilabel/{mldataset}.log",
    benchmark:
        "benchmarks/prepare_multilabel/{mldataset}.tsv"
    conda:
        "../envs/s3a.yaml"
    resources:
        mem_mb=16000,
    params:
        kind=lambda w: ml_builder(w)["kind"],
        params=lambda w: ml_builder(w)["params"],
    script:
        "../scripts/prepare_multilabel.py"


rule embed_label_set:
    input:
        label_set=rules.prepare_multilabel.output.label_set,
        checkpoint=model_checkpoint,
    output:
        "results/{mldataset}/{model}/ml/label_classifier.parquet",
    log:
        "logs/embed_label_set/{mldataset}/{model}.log",
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        model=model_spec,
        templates=ML["templates"],
        batch_size=config["embed"]["text_batch_size"],
    script:
        "../scripts/embed_label_set.py"


rule embed_tiles:
    input:
        manifest=rules.prepare_multilabel.output.manifest,
        checkpoint=model_checkpoint,
    output:
        "results/{mldataset}/{model}/ml/tiles/{split}.parquet",
    log:
        "logs/embed_tiles/{mldataset}/{model}-{split}.log",
    benchmark:
        "benchmarks/embed_tiles/{mldataset}/{model}-{split}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        model=model_spec,
        tiles=ML["tiles"],
    script:
        "../scripts/embed_tiles.py"


rule evaluate_multilabel:
    input:
        scores=ml_stage_input,
        manifest=rules.prepare_multilabel.output.manifest,
        labels=rules.prepare_multilabel.output.labels,
        label_set=rules.prepare_multilabel.output.label_set,
    output:
        "results/{mldataset}/{model}/ml/eval/{mlstage}.parquet",
    log:
        "logs/evaluate_multilabel/{mldataset}/{model}-{mlstage}.log",
    benchmark:
        "benchmarks/evaluate_multilabel/{mldataset}/{model}-{mlstage}.tsv"
    conda:
        "../envs/s3a.yaml"
    resources:
        mem_mb=evaluate_mem_mb,
    params:
        stage=lambda w: w.mlstage,
        split=ml_stage_split,
        setting=ml_setting,
        evaluate=ML["evaluate"],
        pseudo=ML["pseudo"],
    script:
        "../scripts/evaluate_multilabel.py"


rule summarize_multilabel:
    input:
        ml_eval_targets(),
    output:
        parquet="results/summary_multilabel.parquet",
        md="results/summary_multilabel.md",
        html=report(
            "results/report/multilabel.html",
            caption="../report/multilabel.rst",
            category="Summary",
        ),
    log:
        "logs/summarize_multilabel/summary.log",
    conda:
        "../envs/s3a.yaml"
    params:
        random_weights=random_weight_models(),
    script:
        "../scripts/summarize_multilabel.py"
