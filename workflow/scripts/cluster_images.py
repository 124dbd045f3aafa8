"""Rule cluster_images: seeded k-means of the train-split embeddings (spec 5.1)."""

from s3a.discover.cluster import KMeansParams, cluster_embeddings
from s3a.io import read_embeddings, read_table, write_table
from s3a.logs import log_to


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        image_ids, features = read_embeddings(smk.input.embeddings)
        k = smk.params.k
        if k == "auto":
            search = read_table(smk.input.k_search)
            k = int(search.loc[search.selected, "k"].iloc[0])
        log.info("k-means of %d images into %d clusters", len(image_ids), k)
        write_table(
            cluster_embeddings(image_ids, features, int(k), KMeansParams(**smk.params.kmeans)), smk.output[0]
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
