"""Rule name_images: one row per image with the final model's name, and a folder's tags (see s3a.names)."""

import pandas as pd

from s3a.io import read_table, write_table
from s3a.logs import log_to
from s3a.names import names_arrow, names_table, write_names_csv


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        table = names_table(
            read_table(smk.input.manifest, columns=["image_id", "path", "split"]),
            read_table(smk.input.vocabulary, columns=["vocab_index", "name"]),
            pd.concat([read_table(p) for p in smk.input.final], ignore_index=True),
            pd.concat([read_table(p) for p in smk.input.zeroshot], ignore_index=True),
            read_table(smk.input.structural, columns=["image_id", "cluster"]),
            read_table(smk.input.tags) if getattr(smk.input, "tags", None) else None,
        )
        write_table(names_arrow(table), smk.output.table)
        write_names_csv(table, smk.output.csv)
        log.info("%d images named with %d distinct names", len(table), table.name.nunique())
        if "tags" in table:
            log.info("%d images tagged (%d tags)", sum(map(bool, table.tags)), sum(map(len, table.tags)))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
