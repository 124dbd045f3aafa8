# Discovery (spec 4-5): K estimation, k-means, vote, LLM descriptions, realignment.


localrules:
    describe_candidates,


rule estimate_k:
    input:
        embeddings="results/{dataset}/{model}/embed/train.parquet",
    output:
        "results/{dataset}/{model}/discover/k_search.parquet",
    log:
        "logs/estimate_k/{dataset}/{model}.log",
    benchmark:
        "benchmarks/estimate_k/{dataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        search=k_search_params,
    script:
        "../scripts/estimate_k.py"


rule cluster_images:
    input:
        unpack(cluster_inputs),
    output:
        "results/{dataset}/{model}/discover/clusters.parquet",
    log:
        "logs/cluster_images/{dataset}/{model}.log",
    benchmark:
        "benchmarks/cluster_images/{dataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        k=dataset_k,
        kmeans=config["discover"]["kmeans"],
    script:
        "../scripts/cluster_images.py"


rule vote_candidates:
    input:
        embeddings="results/{dataset}/{model}/embed/train.parquet",
        classifier=rules.embed_vocabulary.output[0],
        clusters="results/{dataset}/{model}/discover/clusters.parquet",
        zeroshot="results/{dataset}/{model}/zeroshot/train.parquet",
    output:
        candidates="results/{dataset}/{model}/discover/candidates.parquet",
        partition="results/{dataset}/{model}/discover/vote_partition.parquet",
    log:
        "logs/vote_candidates/{dataset}/{model}.log",
    benchmark:
        "benchmarks/vote_candidates/{dataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        vote=config["discover"]["vote"],
    script:
        "../scripts/vote_candidates.py"


rule describe_candidates:
    input:
        candidates="results/{dataset}/{model}/discover/candidates.parquet",
        vocabulary=rules.build_vocabulary.output[0],
    output:
        "results/{dataset}/{model}/discover/descriptions.parquet",
    log:
        "logs/describe_candidates/{dataset}/{model}.log",
    benchmark:
        "benchmarks/describe_candidates/{dataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    # it waits on the network (or reads its cache): no core of --cores is held from the other jobs
    threads: 0
    params:
        llm=llm_settings,
    script:
        "../scripts/describe_candidates.py"


rule realign_labels:
    input:
        embeddings="results/{dataset}/{model}/embed/train.parquet",
        classifier=rules.embed_vocabulary.output[0],
        vocabulary=rules.build_vocabulary.output[0],
        partition="results/{dataset}/{model}/discover/vote_partition.parquet",
        candidates="results/{dataset}/{model}/discover/candidates.parquet",
        descriptions="results/{dataset}/{model}/discover/descriptions.parquet",
        checkpoint=model_checkpoint,
    output:
        "results/{dataset}/{model}/discover/structural_labels.parquet",
    log:
        "logs/realign_labels/{dataset}/{model}.log",
    benchmark:
        "benchmarks/realign_labels/{dataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        model=model_spec,
        realign=realign_params,
    script:
        "../scripts/realign_labels.py"
