# Metrics per dataset, model, stage and split, and the cross-dataset summary.


rule evaluate:
    input:
        manifest="results/{dataset}/manifest.parquet",
        vocabulary="results/vocabulary/vocabulary.parquet",
        predictions=stage_predictions,
    output:
        "results/{dataset}/{model}/eval/{stage}.parquet",
    log:
        "logs/evaluate/{dataset}/{model}-{stage}.log",
    resources:
        mem_mb=8000,
    params:
        stage=stage_params,
        soft_model=config["evaluate"]["soft_model"],
    script:
        "../scripts/evaluate.py"


rule summarize:
    input:
        evaluation_targets(),
    output:
        table="results/summary.parquet",
        markdown="results/summary.md",
    log:
        "logs/summarize/summary.log",
    localrule: True
    script:
        "../scripts/summarize.py"
