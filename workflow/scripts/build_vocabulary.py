"""Rule build_vocabulary: the ~20K-name ImageNet-21K vocabulary with synset ids and definitions."""

from s3a.io import write_table
from s3a.logs import log_to
from s3a.vocab import build_vocabulary


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        vocabulary = build_vocabulary(extra_wnids=list(smk.params.extra_wnids))
        log.info(
            "vocabulary: %d names from %d synsets", len(vocabulary), vocabulary.synset_ids.map(len).sum()
        )
        write_table(vocabulary, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
