# Dataset manifests and the vocabulary.


localrules:
    prepare_manifest,
    build_vocabulary,
    create_random_model,


rule prepare_manifest:
    output:
        "results/{dataset}/manifest.parquet",
    log:
        "logs/prepare_manifest/{dataset}.log",
    benchmark:
        "benchmarks/prepare_manifest/{dataset}.tsv"
    # the S3A datasets; a multi-label dataset's manifest comes from prepare_multilabel
    wildcard_constraints:
        dataset=one_of(DATASETS),
    conda:
        "../envs/s3a.yaml"
    params:
        dataset=manifest_params,
    script:
        "../scripts/prepare_manifest.py"


rule build_vocabulary:
    output:
        "results/vocabulary/vocabulary.parquet",
    log:
        "logs/build_vocabulary/vocabulary.log",
    benchmark:
        "benchmarks/build_vocabulary/vocabulary.tsv"
    conda:
        "../envs/s3a.yaml"
    params:
        extra_wnids=config["vocabulary"]["extra_wnids"],
    script:
        "../scripts/build_vocabulary.py"


rule create_random_model:
    output:
        "resources/models/random-{arch}-seed{seed}.pt",
    log:
        "logs/create_random_model/{arch}-seed{seed}.log",
    conda:
        "../envs/s3a.yaml"
    script:
        "../scripts/create_random_model.py"
