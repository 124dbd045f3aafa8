"""Rule embed_label_set: the label text classifier W of a multi-label dataset's label set."""

import torch

from s3a.io import read_table, write_table
from s3a.logs import log_to
from s3a.models import ModelSpec, load_clip
from s3a.multilabel.classifier import embed_label_set


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        label_set = read_table(smk.input.label_set, columns=["label_index", "prompt"])
        clip = load_clip(ModelSpec(**smk.params.model))
        table = embed_label_set(clip, label_set, smk.params.templates, smk.params.batch_size)
        log.info("label classifier: %d labels, templates %s", table.num_rows, smk.params.templates)
        write_table(table, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
