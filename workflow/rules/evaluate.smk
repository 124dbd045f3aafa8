# Metrics per dataset, model, stage and split, and the cross-dataset summary.


rule evaluate:
    input:
        manifest="results/{dataset}/manifest.parquet",
        vocabulary="results/vocabulary/vocabulary.parquet",
        predictions=stage_predictions,
        discovery=discovery_inputs,
    output:
        "results/{dataset}/{model}/eval/{stage}.parquet",
    log:
        "logs/evaluate/{dataset}/{model}-{stage}.log",
    resources:
        mem_mb=evaluate_mem_mb,
    params:
        stage=stage_params,
        soft_model=config["evaluate"]["soft_model"],
    script:
        "../scripts/evaluate.py"


rule evaluate_best:
    input:
        manifest="results/{dataset}/manifest.parquet",
        vocabulary="results/vocabulary/vocabulary.parquet",
        epochs="results/{dataset}/{model}/train/test_epochs.parquet",
    output:
        "results/{dataset}/{model}/eval/student_best.parquet",
    log:
        "logs/evaluate_best/{dataset}/{model}.log",
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
    localrule: True
    params:
        oov={name: config["datasets"][name]["oov"] for name in DATASETS},
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
    localrule: True
    script:
        "../scripts/plot_run.py"
