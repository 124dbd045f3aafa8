"""Rule summarize_multilabel: every multi-label evaluation table in one, and its Markdown report (our
rows beside the published numbers)."""

from s3a.io import atomic_path, read_table, write_table
from s3a.logs import log_to
from s3a.multilabel.report import summarize, summary_html, summary_markdown


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        summary = summarize([read_table(path) for path in smk.input])
        write_table(summary, smk.output.parquet)
        with atomic_path(smk.output.md) as tmp:
            tmp.write_text(summary_markdown(summary) + "\n")
        with atomic_path(smk.output.html) as tmp:
            tmp.write_text(summary_html(summary, smk.params.random_weights))
        log.info("multi-label summary of %d metric rows: %s", len(summary), smk.output.md)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
