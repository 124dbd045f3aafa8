"""Rule create_random_model: a randomly initialised open_clip checkpoint (demo and tests)."""

from s3a.logs import log_to
from s3a.models import save_random_checkpoint


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        save_random_checkpoint(smk.wildcards.arch, smk.output[0], seed=int(smk.wildcards.seed))
        log.info("saved random %s (seed %s) to %s", smk.wildcards.arch, smk.wildcards.seed, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
