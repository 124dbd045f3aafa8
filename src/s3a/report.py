"""Cross-dataset summary of the metric rows: ``results/summary.parquet`` and a Markdown table.

``python -m s3a.report results/summary.parquet`` prints the table and where the results are, and the
multi-label summary (our rows beside the published numbers) when ``summary_multilabel.parquet`` lies
beside it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from s3a.io import atomic_path, read_table

KEY_COLUMNS = ["dataset", "model", "stage", "label_set", "split"]
#: the multi-label summary (rule summarize_multilabel), shown by :func:`main` when beside the summary
MULTILABEL_SUMMARY = "summary_multilabel.parquet"
METRIC_COLUMNS = ["n", "skipped", "top1", "cluster_acc", "soft_acc", "oov_fraction"]

#: the stages in the order the pipeline makes them
STAGE_ORDER = ("zeroshot", "structural", "student", "student_best", "teacher")
#: (stage, split) pairs of the comparison table: baselines and labels on train, trained models on
#: test; ``student``/``teacher`` are the last epoch, ``student_best`` the best epoch selected on test
COMPARED = (
    ("zeroshot", "train"),
    ("structural", "train"),
    ("student", "test"),
    ("student_best", "test"),
    ("teacher", "test"),
)
#: the ``selection`` of the trained models' rows that are not the best epoch
LAST_EPOCH = "last epoch"

#: Published numbers (S3A_SPEC.md section 8), ViT-B/16, by the dataset keys of config/config.yaml:
#: S3A Acc / Clu (8.1; OOV sets: both soft scores) and the CLIP zero-shot baseline on the train split (8.2).
PUBLISHED = pd.DataFrame(
    [
        ("stanford_dogs", 58.94, 62.19, 53.43),
        ("imagenet100", 52.08, 82.76, 29.39),
        ("imagenet1k", 42.43, 63.15, 32.21),
        ("living17", 48.34, 75.57, 37.32),
        ("nonliving26", 56.20, 75.97, 33.35),
        ("entity13", 45.21, 76.92, 30.09),
        ("entity30", 50.41, 76.14, 31.23),
        ("caltech101", 55.29, 55.55, float("nan")),
        ("cifar100", 46.10, 46.40, float("nan")),
        ("oxford_pet", 59.00, 60.57, float("nan")),
    ],
    columns=["dataset", "paper_s3a_acc", "paper_s3a_clu", "paper_clip_train_acc"],
)


def summarize(tables: Sequence[pd.DataFrame], random_models: Sequence[str] = ()) -> pd.DataFrame:
    """Concatenate metric rows of every dataset, model and stage, sorted by their keys.

    Args:
        tables: metric rows (``evaluate`` outputs).
        random_models: model keys whose weights are random (the demo's): their rows get
            ``random_weights`` True, and :func:`summary_markdown` says so in words.

    Raises:
        ValueError: two rows share the same (dataset, model, stage, label_set, split) key.
    """
    summary = pd.concat(list(tables), ignore_index=True) if tables else pd.DataFrame(columns=KEY_COLUMNS)
    duplicated = summary.duplicated(KEY_COLUMNS, keep=False)
    if duplicated.any():
        raise ValueError(f"duplicate metric rows:\n{summary.loc[duplicated, KEY_COLUMNS]}")
    # which epoch a trained model's row is: the last one, or the best one selected on test
    selection = summary["selection"] if "selection" in summary else pd.Series(pd.NA, index=summary.index)
    trained = summary.stage.isin(["student", "teacher"])
    summary["selection"] = selection.where(selection.notna(), trained.map({True: LAST_EPOCH, False: ""}))
    summary["random_weights"] = summary["model"].isin(list(random_models))
    # stages in pipeline order, the other keys alphabetically
    rank = {stage: i for i, stage in enumerate(STAGE_ORDER)}
    return summary.sort_values(
        KEY_COLUMNS, key=lambda c: c.map(rank) if c.name == "stage" else c, ignore_index=True
    )


def summary_markdown(summary: pd.DataFrame) -> str:
    """A Markdown table of the summary (accuracies in percent, one decimal), with the ``selection``
    of each trained model's row (last epoch, or best epoch selected on the test split), and a plain
    note below it when a model has random weights."""
    columns = KEY_COLUMNS + METRIC_COLUMNS + ["selection"]
    shown = summary[[c for c in columns if c in summary.columns]].copy()
    for column in ("top1", "cluster_acc", "soft_acc"):
        if column in shown:
            shown[column] = shown[column].map(lambda v: "n/a" if pd.isna(v) else f"{v:.1f}")
    if "oov_fraction" in shown:
        shown["oov_fraction"] = shown["oov_fraction"].map(lambda v: "n/a" if pd.isna(v) else f"{v:.2f}")
    text = shown.to_markdown(index=False)
    text += llm_fallback_note(summary)
    if "random_weights" in summary and summary["random_weights"].any():
        models = ", ".join(sorted(summary.loc[summary["random_weights"], "model"].unique()))
        text += (
            f"\n\nNote: model {models} has random weights, so these accuracies are meaningless: they show "
            "that the pipeline runs end to end, not how well S3A works."
        )
    return text


def llm_fallback_note(summary: pd.DataFrame) -> str:
    """A paragraph naming, per dataset and model, the clusters the LLM could not describe (they got
    their WordNet definitions under ``llm.on_failure: wordnet``), or ``""`` when there are none."""
    if "llm_fallback_clusters" not in summary:
        return ""
    counts = summary.dropna(subset=["llm_fallback_clusters"])
    counts = counts[counts["llm_fallback_clusters"] > 0].drop_duplicates(["dataset", "model"])
    if counts.empty:
        return ""
    items = ", ".join(
        f"{d}/{m}: {int(n)} cluster{'s' if n != 1 else ''}"
        for d, m, n in counts[["dataset", "model", "llm_fallback_clusters"]].itertuples(index=False)
    )
    return (
        f"\n\nLLM fallback: the LLM gave no valid answer for some clusters, which were described by their "
        f"WordNet definitions instead ({items}). Their answers are not cached: rerun with "
        "`--forcerun describe_candidates` (and a better server or model) to ask for them again."
    )


def comparison_table(summary: pd.DataFrame, oov: dict[str, bool] | None = None) -> pd.DataFrame:
    """One row per (dataset, model): our accuracies per stage next to the published numbers.

    The accuracy column is the exact top-1 over the vocabulary, or the soft score for the
    out-of-vocabulary datasets (``oov[dataset]`` true), as in the paper's table. ``student_test`` is
    the last epoch, ``student_best_test`` the best epoch selected on the test split (as the official
    code reports; an optimistic number).
    """
    oov = oov or {}
    rows = []
    vocab = summary[summary.label_set == "vocabulary"]
    for (dataset, model), group in vocab.groupby(["dataset", "model"], sort=True):
        metric = "soft_acc" if oov.get(dataset, False) else "top1"
        row = {"dataset": dataset, "model": model, "accuracy": "soft" if metric == "soft_acc" else "top-1"}
        for stage, split in COMPARED:
            hit = group[(group.stage == stage) & (group.split == split)]
            row[f"{stage}_{split}_acc"] = float(hit[metric].iloc[0]) if len(hit) else float("nan")
            row[f"{stage}_{split}_clu"] = float(hit.cluster_acc.iloc[0]) if len(hit) else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.merge(PUBLISHED, on="dataset", how="left")


def plot_training(history: pd.DataFrame, path: str | Path) -> None:
    """Training curves of one run: losses, confident fraction and accuracies per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for column in ("loss", "loss_ins", "loss_str"):
        left.plot(history.epoch, history[column], marker="o", label=column)
    left.set(xlabel="epoch", ylabel="loss", title="losses")
    left.legend()
    for column in ("structural_top1", "teacher_top1_train", "student_test_top1", "teacher_test_top1"):
        if column in history:
            right.plot(history.epoch, history[column], marker="o", label=f"{column} (%)")
    right.plot(history.epoch, 100 * history.confident_fraction, marker="o", label="confident (%)")
    right.set(xlabel="epoch", ylabel="%", title="labels and teacher")
    right.legend()
    fig.tight_layout()
    _save_figure(fig, path)


def plot_cluster_sizes(kmeans: pd.DataFrame, structural: pd.DataFrame, path: str | Path) -> None:
    """Sorted cluster sizes of the k-means partition and of the structural labels, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, frame in (("k-means", kmeans), ("structural labels", structural)):
        sizes = frame.cluster.value_counts().sort_values(ascending=False).to_numpy()
        ax.plot(range(1, len(sizes) + 1), sizes, marker=".", label=f"{name} ({len(sizes)} clusters)")
    ax.set(xlabel="cluster rank", ylabel="images", title="cluster sizes", yscale="log")
    ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)


def _save_figure(fig, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the summary at ``argv[0]`` (default ``results/summary.parquet``) and, when
    ``summary_multilabel.parquet`` lies beside it, the multi-label section (our rows and the
    published numbers, :func:`s3a.multilabel.report.summary_markdown`). Returns 1 when neither exists.

    Layers: ``s3a.multilabel`` builds on the core modules and this module is one of them, so it never
    imports ``s3a.multilabel`` at import time; only this command line entry (the top of the stack)
    loads the multi-label report, and only when there is a multi-label summary to show."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0] if args else "results/summary.parquet")
    multilabel = path.with_name(MULTILABEL_SUMMARY)
    if not path.is_file() and not multilabel.is_file():
        print(f"no summary at {path}: run the workflow first", file=sys.stderr)
        return 1
    if path.is_file():
        print(summary_markdown(read_table(path)))
        print(
            f"\nResults: {path.parent.resolve()}/ (summary: {path}, {path.with_suffix('.md')}; per dataset: "
            f"{path.parent}/<dataset>/<model>/)"
        )
    if multilabel.is_file():
        from s3a.multilabel.report import summary_markdown as multilabel_markdown

        print("\n## Multi-label\n\n" + multilabel_markdown(read_table(multilabel)))
        print(
            f"\nMulti-label results: {multilabel}, {multilabel.with_suffix('.md')}; per dataset: "
            f"{path.parent}/<dataset>/<model>/ml/"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
