"""Rule embed_images: unit-norm CLIP image embeddings of one split (corrupt images skipped)."""

import os

import torch

from s3a.embed import EmbedParams, encode_images
from s3a.io import read_table, write_embeddings
from s3a.logs import log_to
from s3a.models import ModelSpec, load_clip


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        manifest = read_table(smk.input.manifest, columns=["image_id", "path", "split"])
        rows = manifest[manifest.split == smk.wildcards.split]
        clip = load_clip(ModelSpec(**smk.params.model))
        params = EmbedParams(
            batch_size=smk.params.batch_size, num_workers=max(0, smk.threads - 1), decoder=smk.params.decoder
        )
        result = encode_images(clip.model, clip.preprocess, list(rows.path), params)
        log.info("%s: embedded %d of %d images", smk.wildcards.split, len(result.index), len(rows))
        if len(rows) and not len(result.index):  # one line, not a failure three jobs on
            where = os.path.commonpath([os.path.dirname(p) for p in rows.path])
            message = f"no readable image in {where}: {len(rows)} unreadable files, see {smk.log[0]}"
            log.error(message)
            raise SystemExit(message)
        write_embeddings(rows.image_id.to_numpy()[result.index], result.embeddings, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
