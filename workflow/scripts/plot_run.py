"""Rule plot_run: training curves and cluster sizes of one dataset and model, for the report."""

from s3a.io import read_table
from s3a.logs import log_to
from s3a.report import plot_cluster_sizes, plot_training


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        plot_training(read_table(smk.input.history), smk.output.training)
        plot_cluster_sizes(
            read_table(smk.input.clusters), read_table(smk.input.structural), smk.output.clusters
        )
        log.info("figures: %s, %s", smk.output.training, smk.output.clusters)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
