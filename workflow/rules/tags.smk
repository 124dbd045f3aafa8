# Multi-label tags of a photo folder (`names.tags`, s3a.multilabel.openvocab.tags): the 3x3 tiles of its photos,
# a label set discovered over the vocabulary and the names present in each photo; name_images adds them
# to names.csv / names.parquet and build_gallery writes the tag page.


def tagged(dataset):
    """Whether a dataset gets tags: a photo folder (no ground truth) while `names.tags.enabled`."""
    return config["names"]["tags"]["enabled"] and dataset in DATASETS and dataset not in LABELLED


def tag_inputs(wildcards):
    """The tags of a tagged dataset (an input of name_images), else none."""
    if not tagged(wildcards.dataset):
        return {}
    return {"tags": f"results/{wildcards.dataset}/{wildcards.model}/tags/tags.parquet"}


def tag_settings(wildcards):
    """What tag_images reads of `names.tags` (not the tag page's `page_images`, which only the gallery
    reads)."""
    return {k: v for k, v in config["names"]["tags"].items() if k not in ("enabled", "page_images")}


def tag_page(wildcards):
    """Thumbnails per tag of the gallery's tag page; None: no tags, no tag page."""
    return config["names"]["tags"]["page_images"] if tagged(wildcards.dataset) else None


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
