# Multi-label tags of a photo folder (`names.tags`, s3a.multilabel.openvocab.tags): the 3x3 tiles of its photos,
# a label set discovered over the vocabulary and the names present in each photo; name_images adds them
# to names.csv / names.parquet and build_gallery writes the tag page. Their input functions (tagged,
# tag_inputs, tag_settings, tag_page) are in common.smk.


rule embed_tag_tiles:
    input:
        manifest=rules.prepare_manifest.output[0],
        checkpoint=model_checkpoint,
    output:
        "results/{dataset}/{model}/tags/tiles.parquet",
    log:
        "logs/embed_tag_tiles/{dataset}/{model}.log",
    benchmark:
        "benchmarks/embed_tag_tiles/{dataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        model=model_spec,
        tiles=config["multilabel"]["tiles"],
    script:
        "../scripts/embed_tag_tiles.py"


rule tag_images:
    input:
        embeddings="results/{dataset}/{model}/embed/train.parquet",
        tiles=rules.embed_tag_tiles.output[0],
        classifier=rules.embed_vocabulary.output[0],
    output:
        tags="results/{dataset}/{model}/tags/tags.parquet",
        discovered="results/{dataset}/{model}/tags/discovered.parquet",
    log:
        "logs/tag_images/{dataset}/{model}.log",
    benchmark:
        "benchmarks/tag_images/{dataset}/{model}.tsv"
    conda:
        "../envs/s3a.yaml"
    threads: config["compute"]["cpus_per_gpu"]
    resources:
        **gpu_resources(),
    params:
        tags=tag_settings,
        pseudo=config["multilabel"]["pseudo"],
        kmeans=config["discover"]["kmeans"],
        vote=config["discover"]["vote"],
    script:
        "../scripts/tag_images.py"
