"""Rule embed_tag_tiles: the g x g tile embeddings of a photo folder's images (for its tags)."""

import torch

from s3a.io import read_table, write_table
from s3a.logs import log_to
from s3a.models import ModelSpec, load_clip
from s3a.multilabel.views.tiles import TileParams, embed_tiles


def main(smk) -> None:
    with log_to(smk.log[0]):
        torch.set_num_threads(smk.threads)
        manifest = read_table(smk.input.manifest, columns=["image_id", "path", "split"])
        clip = load_clip(ModelSpec(**smk.params.model))
        table = embed_tiles(clip, manifest, "train", TileParams(**smk.params.tiles))
        write_table(table, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
