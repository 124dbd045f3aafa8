"""Rule summarize: gather the metric rows of all datasets into one table."""

from s3a.io import atomic_path, read_table, write_table
from s3a.logs import log_to
from s3a.report import comparison_table, summarize, summary_markdown


def main(smk) -> None:
    with log_to(smk.log[0]) as log:
        summary = summarize([read_table(path) for path in smk.input], smk.params.random_weights)
        write_table(summary, smk.output.table)
        with atomic_path(smk.output.markdown) as tmp:
            tmp.write_text(summary_markdown(summary) + "\n")
        comparison = comparison_table(summary, dict(smk.params.oov))
        with atomic_path(smk.output.comparison) as tmp:
            tmp.write_text(comparison.to_html(index=False, float_format="%.2f", na_rep="-"))
        log.info("summary of %d metric rows: %s", len(summary), smk.output.markdown)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake
