"""Cross-dataset summary of the metric rows: ``results/summary.parquet`` and a Markdown table.

``python -m s3a.report results/summary.parquet`` prints the table and where the results are.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from s3a.io import read_table

KEY_COLUMNS = ["dataset", "model", "stage", "label_set", "split"]
METRIC_COLUMNS = ["n", "top1", "cluster_acc", "soft_acc"]


def summarize(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate metric rows of every dataset, model and stage, sorted by their keys.

    Raises:
        ValueError: two rows share the same (dataset, model, stage, label_set, split) key.
    """
    summary = pd.concat(list(tables), ignore_index=True) if tables else pd.DataFrame(columns=KEY_COLUMNS)
    duplicated = summary.duplicated(KEY_COLUMNS, keep=False)
    if duplicated.any():
        raise ValueError(f"duplicate metric rows:\n{summary.loc[duplicated, KEY_COLUMNS]}")
    return summary.sort_values(KEY_COLUMNS, ignore_index=True)


def summary_markdown(summary: pd.DataFrame) -> str:
    """A Markdown table of the summary (accuracies in percent, one decimal)."""
    shown = summary[[c for c in KEY_COLUMNS + METRIC_COLUMNS if c in summary.columns]].copy()
    for column in ("top1", "cluster_acc", "soft_acc"):
        if column in shown:
            shown[column] = shown[column].map(lambda v: "n/a" if pd.isna(v) else f"{v:.1f}")
    return shown.to_markdown(index=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0] if args else "results/summary.parquet")
    if not path.is_file():
        print(f"no summary at {path}: run the workflow first", file=sys.stderr)
        return 1
    print(summary_markdown(read_table(path)))
    print(
        f"\nResults: {path.parent.resolve()}/ (summary: {path}, {path.with_suffix('.md')}; per dataset: "
        f"{path.parent}/<dataset>/<model>/)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
