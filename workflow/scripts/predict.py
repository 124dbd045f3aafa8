"""Rule predict: argmax over the vocabulary of the self-trained student and teacher on one split."""

import torch

from s3a.embed import EmbedParams
from s3a.io import read_embeddings, read_table, write_table
from s3a.logs import log_to
from s3a.models import ModelSpec
from s3a.predict import ROLES, trained_predictions


def main(smk) -> None:
    with log_to(smk.log[0]):
        torch.set_num_threads(smk.threads)
        manifest = read_table(smk.input.manifest, columns=["image_id", "path", "split"])
        vocab_ids, classifier = read_embeddings(smk.input.classifier, id_column="vocab_index")
        params = EmbedParams(
            batch_size=smk.params.batch_size, num_workers=max(0, smk.threads - 1), decoder=smk.params.decoder
        )
        table = trained_predictions(
            manifest,
            smk.wildcards.split,
            vocab_ids,
            classifier,
            ModelSpec(**smk.params.model),
            {role: getattr(smk.input, role) for role in ROLES},
            params,
            smk.params.runner_ups,
        )
        write_table(table, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
