"""Rule openvocab_scores: each view's (global and tiles) top-k names over the whole vocabulary."""

import torch

from s3a.io import read_embeddings, write_table
from s3a.logs import log_to
from s3a.multilabel.openvocab.scores import openvocab_scores, read_views


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        ids, glob, tiles = read_views(smk.input.embeddings, smk.input.tiles)
        vocab_ids, vocabulary = read_embeddings(smk.input.vocabulary, id_column="vocab_index")
        table = openvocab_scores(ids, glob, tiles, vocab_ids, vocabulary, dict(smk.params.openvocab))
        write_table(table, smk.output[0])
        log.info("open-vocabulary views: %d rows for %d images", len(table), len(ids))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
