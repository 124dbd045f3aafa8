"""Rule realign_labels: descriptions choose among candidates -> structural labels (spec 5.5)."""

import torch

from s3a.discover.realign import RealignParams, realign_labels
from s3a.embed import text_classifier
from s3a.io import read_embeddings, read_table, write_table
from s3a.logs import log_to
from s3a.models import ModelSpec, load_clip
from s3a.vocab import name_to_index


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        image_ids, features = read_embeddings(smk.input.embeddings)
        _, classifier = read_embeddings(smk.input.classifier, id_column="vocab_index")
        partition = read_table(smk.input.partition).set_index("image_id").cluster.loc[image_ids].to_numpy()
        descriptions = read_table(smk.input.descriptions)
        descriptions["vocab_index"] = descriptions.name.map(name_to_index(read_table(smk.input.vocabulary)))
        params = RealignParams(**smk.params.realign)
        clip = load_clip(ModelSpec(**smk.params.model))
        pairs = list(zip(descriptions.name, descriptions.phrase, strict=True))
        phrases = text_classifier(clip.model, clip.tokenizer, pairs, params.description_templates)
        labels = realign_labels(
            image_ids,
            features,
            classifier,
            partition,
            read_table(smk.input.candidates),
            descriptions,
            phrases,
            params,
        )
        log.info("structural labels: %d images, %d names", len(labels), labels.vocab_index.nunique())
        write_table(labels, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
