"""Rule embed_patch_tokens: float16 (N, P, D) CLIP patch tokens of one split, streamed to a .npy, and
their image ids (the mldecoder learner with a frozen backbone)."""

import torch

from s3a.embed import split_images
from s3a.logs import log_to
from s3a.multilabel.decoder.tokens import embed_patch_tokens


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        p = smk.params
        job = split_images(
            smk.input.manifest, smk.wildcards.split, p.model, p.batch_size, p.decoder, smk.threads
        )
        paths, ids = list(job.rows.path), job.rows.image_id.to_numpy()
        out = smk.output
        n = embed_patch_tokens(
            job.clip.model, job.clip.preprocess, paths, ids, out.tokens, out.ids, job.params
        )
        log.info("%s: patch tokens of %d of %d images", smk.wildcards.split, n, len(job.rows))
        if message := job.unreadable(n, smk.log[0]):
            log.error(message)
            raise SystemExit(message)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
