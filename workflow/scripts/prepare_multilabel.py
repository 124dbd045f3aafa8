"""Rule prepare_multilabel: a multi-label dataset's manifest, labels and label set."""

from s3a.io import write_table
from s3a.logs import log_to
from s3a.multilabel.data.registry import build_multilabel


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        data = build_multilabel(smk.params.kind, dict(smk.params.params))
        log.info(
            "%s: %d labels, %d positives, images per split %s",
            smk.wildcards.mldataset,
            len(data.label_set),
            len(data.labels),
            data.manifest.groupby("split").size().to_dict(),
        )
        write_table(data.manifest, smk.output.manifest)
        write_table(data.labels, smk.output.labels)
        write_table(data.label_set, smk.output.label_set)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
