"""Rule train_linear: the linear learner (gradient alignment on cached embeddings) on the train split."""

import pyarrow.parquet as pq
import torch

from s3a.io import read_embeddings, read_table, write_table
from s3a.logs import log_to
from s3a.multilabel.aggregate import PseudoParams
from s3a.multilabel.cdul.linear import save_linear, train_linear_step
from s3a.multilabel.classifier import read_classifier
from s3a.multilabel.learners import linear_settings
from s3a.multilabel.views.tables import read_tiles


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        params, update, tiles = linear_settings(dict(smk.params.train))
        image_ids, global_emb = read_embeddings(smk.input.embeddings)
        tile_ids, tile_emb = read_tiles(smk.input.tiles) if tiles else (None, None)
        out = train_linear_step(
            params,
            update,
            tiles,
            pq.read_table(smk.input.pseudo),
            PseudoParams(**smk.params.pseudo),
            image_ids,
            global_emb,
            tile_ids,
            tile_emb,
            read_classifier(smk.input.classifier),
            labels=read_table(smk.input.labels),
            manifest=read_table(smk.input.manifest, columns=["image_id", "split"]),
            state_path=smk.params.state,
        )
        last = out.history.iloc[-1]
        log.info(
            "linear: %d epochs, final loss %.4f, %d label updates",
            len(out.history),
            last.loss_net,
            last.n_updates,
        )
        save_linear(out.head, smk.output.model, out.tiles)
        write_table(out.history, smk.output.history)
        write_table(out.labels, smk.output.labels)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
