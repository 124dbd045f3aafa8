"""Rule zero_shot: argmax over the whole vocabulary (RZSC baseline) and over the dataset's own names."""

import pandas as pd
import torch

from s3a.embed import text_classifier, zero_shot
from s3a.io import read_embeddings, read_table, write_table
from s3a.logs import log_to
from s3a.models import ModelSpec, load_clip
from s3a.vocab import TEMPLATES


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        image_ids, images = read_embeddings(smk.input.embeddings)
        vocab_ids, vocabulary = read_embeddings(smk.input.classifier, id_column="vocab_index")
        classes = read_table(smk.input.manifest).drop_duplicates("class_index").sort_values("class_index")
        clip = load_clip(ModelSpec(**smk.params.model))
        own = text_classifier(
            clip.model, clip.tokenizer, list(classes.class_name), TEMPLATES[smk.params.templates]
        )
        pred, score = zero_shot(images, vocabulary)
        pred_class, class_score = zero_shot(images, own)
        table = pd.DataFrame({"image_id": image_ids, "pred_vocab_index": vocab_ids[pred], "score": score})
        table["pred_class_index"] = classes.class_index.to_numpy()[pred_class]
        table["class_score"] = class_score
        log.info(
            "%d images: %d distinct vocabulary names predicted", len(table), table.pred_vocab_index.nunique()
        )
        write_table(table, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
