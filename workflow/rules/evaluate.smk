# Metrics per dataset, model, stage and split, the cross-dataset summary, and what a person reads:
# the per-image names table and the gallery of the discovered classes.


localrules:
    summarize,
    plot_run,
    name_images,
    build_gallery,


rule evaluate:
    input:
        manifest=rules.prepare_manifest.output[0],
        vocabulary=rules.build_vocabulary.output[0],
        predictions=stage_predictions,
        discovery=discovery_inputs,
    output:
        "results/{dataset}/{model}/eval/{stage}.parquet",
    log:
        "logs/evaluate/{dataset}/{model}-{stage}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{model}-{stage}.tsv"
    conda:
        "../envs/s3a.yaml"
    resources:
        mem_mb=evaluate_mem_mb,
    params:
        stage=stage_params,
        soft_model=config["evaluate"]["soft_model"],
    script:
        "../scripts/evaluate.py"


rule evaluate_best:
    input:
        manifest=rules.prepare_manifest.output[0],
        vocabulary=rules.build_vocabulary.output[0],
        epochs="results/{dataset}/{model}/train/test_epochs.parquet",
    output:
        "results/{dataset}/{model}/eval/student_best.parquet",
    log:
        "logs/evaluate_best/{dataset}/{model}.log",
    conda:
        "../envs/s3a.yaml"
    resources:
        mem_mb=evaluate_mem_mb,
    params:
        soft_model=config["evaluate"]["soft_model"],
        oov=dataset_oov,
    script:
        "../scripts/evaluate_best.py"


rule summarize:
    input:
        evaluation_targets(),
    output:
        table="results/summary.parquet",
        markdown="results/summary.md",
        comparison=report(
            "results/report/comparison.html",
            caption="../report/comparison.rst",
            category="Summary",
        ),
    log:
        "logs/summarize/summary.log",
    conda:
        "../envs/s3a.yaml"
    params:
        oov={name: config["datasets"][name]["oov"] for name in DATASETS},
        random_weights=random_weight_models(),
    script:
        "../scripts/summarize.py"


rule plot_run:
    input:
        history="results/{dataset}/{model}/train/history.parquet",
        clusters="results/{dataset}/{model}/discover/clusters.parquet",
        structural="results/{dataset}/{model}/discover/structural_labels.parquet",
    output:
        training=report(
            "results/{dataset}/{model}/report/training.png",
            caption="../report/training.rst",
            category="Training curves",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}", "figure": "training"},
        ),
        clusters=report(
            "results/{dataset}/{model}/report/clusters.png",
            caption="../report/clusters.rst",
            category="Cluster sizes",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}", "figure": "clusters"},
        ),
    log:
        "logs/plot_run/{dataset}/{model}.log",
    conda:
        "../envs/s3a.yaml"
    script:
        "../scripts/plot_run.py"


rule name_images:
    input:
        unpack(names_inputs),
    output:
        table="results/{dataset}/{model}/names.parquet",
        csv="results/{dataset}/{model}/names.csv",
    log:
        "logs/name_images/{dataset}/{model}.log",
    benchmark:
        "benchmarks/name_images/{dataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    script:
        "../scripts/name_images.py"


rule build_gallery:
    input:
        manifest=rules.prepare_manifest.output[0],
        vocabulary=rules.build_vocabulary.output[0],
        structural="results/{dataset}/{model}/discover/structural_labels.parquet",
        descriptions="results/{dataset}/{model}/discover/descriptions.parquet",
        names="results/{dataset}/{model}/names.parquet",
        embeddings="results/{dataset}/{model}/embed/train.parquet",
    output:
        report(
            directory("results/{dataset}/{model}/gallery"),
            htmlindex="index.html",
            caption="../report/gallery.rst",
            category="Gallery",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}", "figure": "gallery"},
        ),
    log:
        "logs/build_gallery/{dataset}/{model}.log",
    benchmark:
        "benchmarks/build_gallery/{dataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    params:
        gallery=config["names"]["gallery"],
        labelled=is_labelled,
        note=gallery_note,
        tag_page=tag_page,
    script:
        "../scripts/build_gallery.py"
