"""Rule predict: argmax over the vocabulary of the self-trained student and teacher on one split."""

import pandas as pd
import torch

from s3a.embed import EmbedParams, encode_images, zero_shot
from s3a.io import read_embeddings, read_table, write_table
from s3a.logs import log_to
from s3a.models import ModelSpec, load_trained
from s3a.names import top_names


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        manifest = read_table(smk.input.manifest, columns=["image_id", "path", "split"])
        rows = manifest[manifest.split == smk.wildcards.split]
        vocab_ids, classifier = read_embeddings(smk.input.classifier, id_column="vocab_index")
        params = EmbedParams(
            batch_size=smk.params.batch_size, num_workers=max(0, smk.threads - 1), decoder=smk.params.decoder
        )
        table = pd.DataFrame()
        for role in ("student", "teacher"):
            clip = load_trained(ModelSpec(**smk.params.model), smk.input[role])
            result = encode_images(clip.model, clip.preprocess, list(rows.path), params)
            pred, score = zero_shot(result.embeddings, classifier)
            table["image_id"] = rows.image_id.to_numpy()[result.index]
            table[f"{role}_vocab_index"], table[f"{role}_score"] = vocab_ids[pred], score
            if role == "student":  # the final model's next best names, for the names table
                k = min(smk.params.runner_ups + 1, len(vocab_ids))
                top, _ = top_names(result.embeddings, classifier, k)
                table["student_runner_ups"] = list(vocab_ids[top[:, 1:]])
        log.info(
            "%s: %d images, student names %d",
            smk.wildcards.split,
            len(table),
            table.student_vocab_index.nunique(),
        )
        write_table(table, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
