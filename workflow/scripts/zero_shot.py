"""Rule zero_shot: argmax over the whole vocabulary (RZSC baseline) and over the dataset's own names."""

import torch

from s3a.io import read_embeddings, read_table, write_table
from s3a.logs import log_to
from s3a.models import ModelSpec
from s3a.predict import zero_shot_predictions


def main(smk) -> None:
    with log_to(smk.log[0]):
        torch.set_num_threads(smk.threads)
        image_ids, images = read_embeddings(smk.input.embeddings)
        vocab_ids, vocabulary = read_embeddings(smk.input.classifier, id_column="vocab_index")
        manifest = read_table(smk.input.manifest, columns=["class_index", "class_name"])
        table = zero_shot_predictions(
            image_ids,
            images,
            vocab_ids,
            vocabulary,
            manifest,
            ModelSpec(**smk.params.model),
            smk.params.templates,
        )
        write_table(table, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
