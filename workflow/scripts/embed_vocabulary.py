"""Rule embed_vocabulary: the frozen prompt-ensemble text classifier over the whole vocabulary."""

import torch

from s3a.embed import text_classifier
from s3a.io import read_table, write_embeddings
from s3a.logs import log_to
from s3a.models import ModelSpec, load_clip
from s3a.vocab import TEMPLATES


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        vocabulary = read_table(smk.input.vocabulary, columns=["vocab_index", "name"])
        clip = load_clip(ModelSpec(**smk.params.model))
        templates = TEMPLATES[smk.params.templates]
        weights = text_classifier(
            clip.model, clip.tokenizer, list(vocabulary.name), templates, smk.params.batch_size
        )
        log.info("classifier %s from %d names x %d templates", weights.shape, len(vocabulary), len(templates))
        write_embeddings(vocabulary.vocab_index.to_numpy(), weights, smk.output[0], id_column="vocab_index")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
