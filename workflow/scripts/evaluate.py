"""Rule evaluate: one row of metrics per split and label set for one stage's predictions."""

from s3a.evaluation import evaluate_stage
from s3a.io import read_table, write_table
from s3a.logs import log_to
from s3a.soft import load_soft_scorer


def main(smk) -> None:
    with log_to(smk.log[0]):
        splits = smk.params.stage["splits"]
        rows = evaluate_stage(
            read_table(smk.input.manifest),
            read_table(smk.input.vocabulary, columns=["vocab_index", "name", "synset_ids"]),
            {split: read_table(path) for split, path in zip(splits, smk.input.predictions, strict=True)},
            smk.params.stage["column"],
            {key: getattr(smk.wildcards, key) for key in ("dataset", "model", "stage")},
            load_soft_scorer(smk.params.soft_model),
            # structural stage: the partition, candidates and descriptions of discovery
            tuple(read_table(path) for path in smk.input.discovery) if smk.input.discovery else None,
        )
        write_table(rows, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
