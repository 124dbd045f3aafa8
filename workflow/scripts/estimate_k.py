"""Rule estimate_k: silhouette search of the number of classes (spec 4)."""

from s3a.discover.kestimate import KSearchParams, estimate_k
from s3a.io import read_embeddings, write_table
from s3a.logs import log_to


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        _, features = read_embeddings(smk.input.embeddings)
        params = KSearchParams(**smk.params.search)
        if len(features) <= params.lo:  # K classes need at least K + 1 images
            message = (
                f"only {len(features)} readable images: too few to find {params.lo} or more classes "
                f"(at least {params.lo + 1} are needed; unreadable files are listed in logs/embed_images/)"
            )
            log.error(message)
            raise SystemExit(message)
        k, table = estimate_k(features, params)
        table["selected"] = table.k == k
        log.info("estimated K = %d after %d partitions", k, len(table))
        write_table(table, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
