"""Rule embed_images: unit-norm CLIP image embeddings of one split (corrupt images skipped)."""

import torch

from s3a.embed import encode_images, split_images
from s3a.io import write_embeddings
from s3a.logs import log_to


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        torch.set_num_threads(smk.threads)
        p = smk.params
        job = split_images(
            smk.input.manifest, smk.wildcards.split, p.model, p.batch_size, p.decoder, smk.threads
        )
        result = encode_images(job.clip.model, job.clip.preprocess, list(job.rows.path), job.params)
        log.info("%s: embedded %d of %d images", smk.wildcards.split, len(result.index), len(job.rows))
        if message := job.unreadable(len(result.index), smk.log[0]):  # one line, not a failure three jobs on
            log.error(message)
            raise SystemExit(message)
        write_embeddings(job.rows.image_id.to_numpy()[result.index], result.embeddings, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
