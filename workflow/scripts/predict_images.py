"""Rule predict_images: label scores of a fine-tuned image learner (finetune, mldecoder) on one split."""

import torch

from s3a.io import read_table, write_table
from s3a.logs import log_to
from s3a.multilabel.imagetrain.network import predict_images


def main(smk) -> None:
    with log_to(smk.log[0]):
        torch.set_num_threads(smk.threads)
        manifest = read_table(smk.input.manifest, columns=["image_id", "path", "split"])
        table = predict_images(
            smk.input.model,
            manifest,
            smk.wildcards.split,
            smk.params.model,
            batch_size=smk.params.batch_size,
            decoder=smk.params.decoder,
            num_workers=smk.params.num_workers,
        )
        write_table(table, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
