# Open-vocabulary multi-label over the S3A vocabulary (MULTILABEL_SPEC 8; src/s3a/multilabel/openvocab/):
# per-view top-k names, label discovery and the exact and hierarchical evaluation, when
# `multilabel.openvocab.enabled`.


rule openvocab_scores:
    input:
        embeddings="results/{mldataset}/{model}/embed/{split}.parquet",
        tiles=rules.embed_tiles.output[0],
        vocabulary=rules.embed_vocabulary.output[0],
    output:
        "results/{mldataset}/{model}/ml/openvocab/{split}.parquet",
    log:
        "logs/openvocab_scores/{mldataset}/{model}-{split}.log",
    benchmark:
        "benchmarks/openvocab_scores/{mldataset}/{model}-{split}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        openvocab=ML["openvocab"],
    script:
        "../scripts/openvocab_scores.py"


rule openvocab_labels:
    input:
        views=rules.openvocab_scores.output[0],
        label_set=rules.prepare_multilabel.output.label_set,
        embeddings="results/{mldataset}/{model}/embed/{split}.parquet",
        tiles=rules.embed_tiles.output[0],
        vocabulary=rules.embed_vocabulary.output[0],
    output:
        scores="results/{mldataset}/{model}/ml/openvocab/scores_{split}.parquet",
        discovered="results/{mldataset}/{model}/ml/openvocab/discovered_{split}.parquet",
    log:
        "logs/openvocab_labels/{mldataset}/{model}-{split}.log",
    benchmark:
        "benchmarks/openvocab_labels/{mldataset}/{model}-{split}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: 2
    resources:
        mem_mb=16000,
    params:
        openvocab=ML["openvocab"],
        pseudo=ML["pseudo"],
        kmeans=config["discover"]["kmeans"],
        vote=config["discover"]["vote"],
    script:
        "../scripts/openvocab_labels.py"


rule evaluate_openvocab:
    input:
        scores="results/{mldataset}/{model}/ml/openvocab/scores_test.parquet",
        discovered="results/{mldataset}/{model}/ml/openvocab/discovered_test.parquet",
        labels=rules.prepare_multilabel.output.labels,
        label_set=rules.prepare_multilabel.output.label_set,
        manifest=rules.prepare_multilabel.output.manifest,
        vocabulary=rules.build_vocabulary.output[0],
    output:
        exact="results/{mldataset}/{model}/ml/eval/ov_exact.parquet",
        hier="results/{mldataset}/{model}/ml/eval/ov_hier.parquet",
    log:
        "logs/evaluate_openvocab/{mldataset}/{model}.log",
    benchmark:
        "benchmarks/evaluate_openvocab/{mldataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    resources:
        mem_mb=evaluate_mem_mb,
    params:
        openvocab=ML["openvocab"],
    script:
        "../scripts/evaluate_openvocab.py"
