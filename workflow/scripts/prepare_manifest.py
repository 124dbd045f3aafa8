"""Rule prepare_manifest: list a dataset's images, splits and classes."""

from s3a.data import build_manifest
from s3a.io import write_table
from s3a.logs import log_to


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        spec = smk.params.dataset
        manifest = build_manifest(spec["kind"], dict(spec["params"]))
        counts = manifest.groupby("split").size().to_dict()
        log.info(
            "%s: %d classes, images per split %s",
            smk.wildcards.dataset,
            manifest.class_index.nunique(),
            counts,
        )
        write_table(manifest, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
