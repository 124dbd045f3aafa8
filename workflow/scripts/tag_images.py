"""Rule tag_images: the names present in each photo of a folder, and their scores
(s3a.multilabel.openvocab.tags)."""

import torch

from s3a.io import read_embeddings, write_table
from s3a.logs import log_to
from s3a.multilabel.openvocab.tags import TagParams, image_tags


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        vocab_ids, classifier = read_embeddings(smk.input.classifier, id_column="vocab_index")
        tags, discovered = image_tags(
            smk.input.embeddings,
            smk.input.tiles,
            vocab_ids,
            classifier,
            TagParams(**smk.params.tags),
            dict(smk.params.pseudo),
            dict(smk.params.kmeans),
            dict(smk.params.vote),
        )
        write_table(tags, smk.output.tags)
        write_table(discovered, smk.output.discovered)
        tagged = tags.image_id.nunique()
        log.info("%d tags on %d photos from %d discovered names", len(tags), tagged, len(discovered))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
