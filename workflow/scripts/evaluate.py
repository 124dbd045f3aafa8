"""Rule evaluate: one row of metrics per split and label set for one stage's predictions."""

from s3a.io import read_table, write_table
from s3a.logs import log_to
from s3a.metrics import load_soft_scorer, stage_metrics


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        predictions = {
            split: read_table(path)
            for split, path in zip(smk.params.stage["splits"], smk.input.predictions, strict=True)
        }
        rows = stage_metrics(
            read_table(smk.input.manifest),
            read_table(smk.input.vocabulary, columns=["vocab_index", "name", "synset_ids"]),
            predictions,
            load_soft_scorer(smk.params.soft_model),
            column=smk.params.stage["column"],
        )
        rows.insert(0, "dataset", smk.wildcards.dataset)
        rows.insert(1, "model", smk.wildcards.model)
        rows.insert(2, "stage", smk.wildcards.stage)
        log.info("metrics:\n%s", rows.to_string(index=False))
        write_table(rows, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
