"""Rule describe_candidates: LLM descriptions of each cluster's candidate names (spec 5.4)."""

from s3a.discover.describe import DescribeParams, describe_candidates
from s3a.io import read_table, write_table
from s3a.logs import log_to


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        candidates = read_table(smk.input.candidates)
        vocabulary = read_table(smk.input.vocabulary)
        descriptions = describe_candidates(candidates, vocabulary, DescribeParams(**smk.params.llm))
        log.info("%d phrases for %d clusters", len(descriptions), descriptions.cluster.nunique())
        write_table(descriptions, smk.output[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
