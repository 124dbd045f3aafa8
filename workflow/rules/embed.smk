# CLIP embeddings of the vocabulary and the images, and the zero-shot baselines.


rule embed_vocabulary:
    input:
        vocabulary=rules.build_vocabulary.output[0],
        checkpoint=model_checkpoint,
    output:
        "results/vocabulary/{model}/classifier.parquet",
    log:
        "logs/embed_vocabulary/{model}.log",
    benchmark:
        "benchmarks/embed_vocabulary/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        model=model_spec,
        templates=config["vocabulary"]["templates"],
        batch_size=config["embed"]["text_batch_size"],
    script:
        "../scripts/embed_vocabulary.py"


rule embed_images:
    input:
        manifest=rules.prepare_manifest.output[0],
        checkpoint=model_checkpoint,
    output:
        "results/{dataset}/{model}/embed/{split}.parquet",
    log:
        "logs/embed_images/{dataset}/{model}-{split}.log",
    benchmark:
        "benchmarks/embed_images/{dataset}/{model}-{split}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        model=model_spec,
        batch_size=config["embed"]["batch_size"],
        decoder=config["embed"]["decoder"],
    script:
        "../scripts/embed_images.py"


rule zero_shot:
    input:
        manifest=rules.prepare_manifest.output[0],
        embeddings="results/{dataset}/{model}/embed/{split}.parquet",
        classifier="results/vocabulary/{model}/classifier.parquet",
        checkpoint=model_checkpoint,
    output:
        "results/{dataset}/{model}/zeroshot/{split}.parquet",
    log:
        "logs/zero_shot/{dataset}/{model}-{split}.log",
    benchmark:
        "benchmarks/zero_shot/{dataset}/{model}-{split}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        model=model_spec,
        templates=config["vocabulary"]["templates"],
    script:
        "../scripts/zero_shot.py"
