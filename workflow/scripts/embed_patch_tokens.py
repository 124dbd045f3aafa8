"""Rule embed_patch_tokens: float16 (N, P, D) CLIP patch tokens of one split, streamed to a .npy, and
their image ids (the mldecoder learner with a frozen backbone)."""

import torch

from s3a.embed import EmbedParams
from s3a.io import read_table
from s3a.logs import log_to
from s3a.models import ModelSpec, load_clip
from s3a.multilabel.decoder.tokens import embed_patch_tokens


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        manifest = read_table(smk.input.manifest, columns=["image_id", "path", "split"])
        rows = manifest[manifest.split == smk.wildcards.split]
        clip = load_clip(ModelSpec(**smk.params.model))
        params = EmbedParams(
            batch_size=smk.params.batch_size, num_workers=max(0, smk.threads - 1), decoder=smk.params.decoder
        )
        n = embed_patch_tokens(
            clip.model,
            clip.preprocess,
            list(rows.path),
            rows.image_id.to_numpy(),
            smk.output.tokens,
            smk.output.ids,
            params,
        )
        log.info("%s: patch tokens of %d of %d images", smk.wildcards.split, n, len(rows))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
