"""Rule predict_linear: sigmoid label scores of the trained linear learner on one split."""

import torch

from s3a.io import read_embeddings, write_table
from s3a.logs import log_to
from s3a.multilabel.cdul.linear import load_linear, predict_linear_step
from s3a.multilabel.views.tables import read_tiles


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        head, tiles = load_linear(smk.input.model)  # the feature kind it was trained with
        image_ids, global_emb = read_embeddings(smk.input.embeddings)
        tile_ids, tile_emb = read_tiles(smk.input.tiles) if tiles else (None, None)
        table = predict_linear_step(head, tiles, image_ids, global_emb, tile_ids, tile_emb)
        log.info("%s: scored %d images", smk.wildcards.split, table.num_rows)
        write_table(table, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
