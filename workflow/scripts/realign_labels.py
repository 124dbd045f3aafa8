"""Rule realign_labels: descriptions choose among candidates -> structural labels (spec 5.5)."""

import torch

from s3a.discover.realign import RealignParams, structural_labels
from s3a.io import read_embeddings, read_table, write_table
from s3a.logs import log_to
from s3a.models import ModelSpec


def main(smk) -> None:
    with log_to(smk.log[0]):
        torch.set_num_threads(smk.threads)
        image_ids, features = read_embeddings(smk.input.embeddings)
        _, classifier = read_embeddings(smk.input.classifier, id_column="vocab_index")
        labels = structural_labels(
            image_ids,
            features,
            classifier,
            read_table(smk.input.partition, columns=["image_id", "cluster"]),
            read_table(smk.input.candidates),
            read_table(smk.input.descriptions),
            read_table(smk.input.vocabulary, columns=["vocab_index", "name"]),
            ModelSpec(**smk.params.model),
            RealignParams(**smk.params.realign),
        )
        write_table(labels, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
