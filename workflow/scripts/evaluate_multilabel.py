"""Rule evaluate_multilabel: metrics rows of one stage (zero-shot, pseudo, refined labels, a learner)."""

import pyarrow.parquet as pq

from s3a.io import read_table, write_table
from s3a.logs import log_to
from s3a.multilabel.aggregate import PseudoParams
from s3a.multilabel.evaluate import evaluate_ml_stage
from s3a.multilabel.metrics import EvalParams


def main(smk) -> None:
    with log_to(smk.log[0]):
        evaluate = dict(smk.params.evaluate)
        if "topk" in evaluate:
            evaluate["topk"] = tuple(evaluate["topk"])
        rows = evaluate_ml_stage(
            smk.params.stage,
            pq.read_table(smk.input.scores),
            read_table(smk.input.manifest, columns=["image_id", "split"]),
            read_table(smk.input.labels),
            read_table(smk.input.label_set),
            smk.params.split,
            smk.params.setting,
            EvalParams(**evaluate),
            PseudoParams(**smk.params.pseudo),
            dataset=smk.wildcards.mldataset,
            model=smk.wildcards.model,
        )
        write_table(rows, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
