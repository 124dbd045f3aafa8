"""The multi-label summary: every evaluation table in one, a Markdown report of our rows beside the
published numbers of CDUL, ML-Decoder and CLIP-Decoder (rule ``summarize_multilabel``, and the multi-label
section of ``python -m s3a.report``).

Published numbers keep their source tag: ``sec`` (quoted by later work / a paper's secondary
source), ``readme`` (the authors' README), ``recalled`` (from memory, unverified), ``inferred``
(derived in the spec), ``issues`` (a GitHub issue; protocols may differ). They are matched to our
datasets by name: a published ``dataset`` (the builder kind, e.g. ``nuswide``, or a family such as
``voc``) stands beside every dataset key that starts with it (``nuswide_zsl``, ``voc2012``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from s3a.multilabel.metrics import EVAL_COLUMNS, SUBSETS

__all__ = [
    "PUBLISHED", "KEY_COLUMNS", "STAGE_ORDER", "SHOWN_METRICS", "SOURCES_NOTE", "summarize", "summary_tables",
    "summary_markdown", "summary_html", "STAGE_LEGEND", "METRIC_LEGEND", "NA_NOTE",
]  # fmt: skip

KEY_COLUMNS = ["dataset", "model", "stage", "split", "subset"]
#: the stages in the order the pipeline makes them (others follow alphabetically)
STAGE_ORDER = (
    "zs_global", "zs_local", "zs_final", "pseudo_train", "refined_linear", "refined_finetune",
    "refined_mldecoder", "linear", "finetune", "mldecoder", "ov_exact", "ov_hier",
)  # fmt: skip
#: the metrics of the Markdown table, with their headers
SHOWN_METRICS = {"map": "mAP", "c_f1": "CF1", "o_f1": "OF1", "f1_at_3": "F1@3", "f1_at_5": "F1@5"}

#: MULTILABEL_SPEC section 12: method, dataset (builder kind or family), setting (standard = the
#: full label set; zsl / gzsl the NUS-WIDE protocol), metric (an eval column, or ``map_gain`` =
#: mAP points over the prior best), value (percent), source tag
PUBLISHED = pd.DataFrame(
    [
        ("CDUL (paper)", "voc2007", "standard", "map", 89.0, "sec"),
        ("CDUL (paper)", "voc2012", "standard", "map", 88.6, "sec"),
        ("CDUL (paper)", "coco", "standard", "map", 69.2, "sec"),
        ("CDUL (paper)", "nuswide", "standard", "map", 44.0, "sec"),
        ("ML-Decoder", "coco", "standard", "map", 91.4, "readme"),
        ("ML-Decoder", "nuswide", "zsl", "map", 31.1, "readme"),
        ("ML-Decoder", "voc", "standard", "map", 96.6, "sec"),
        ("ML-Decoder", "openimages", "standard", "map", 86.8, "sec"),
        ("ML-Decoder", "nuswide", "zsl", "f1_at_3", 34.1, "recalled"),
        ("ML-Decoder", "nuswide", "zsl", "f1_at_5", 30.8, "recalled"),
        ("ML-Decoder", "nuswide", "gzsl", "map", 19.9, "recalled"),
        ("Fast0Tag", "nuswide", "zsl", "map", 15.1, "sec"),
        ("Fast0Tag", "nuswide", "zsl", "f1_at_3", 27.8, "sec"),
        ("Fast0Tag", "nuswide", "zsl", "f1_at_5", 26.4, "sec"),
        ("Fast0Tag", "nuswide", "gzsl", "map", 3.7, "sec"),
        ("Fast0Tag", "nuswide", "gzsl", "f1_at_3", 11.5, "sec"),
        ("Fast0Tag", "nuswide", "gzsl", "f1_at_5", 13.5, "sec"),
        ("CLIP-Decoder", "nuswide", "zsl", "map_gain", 3.9, "readme"),
        ("CLIP-Decoder", "nuswide", "gzsl", "map_gain", 2.3, "readme"),
        ("CLIP-Decoder", "nuswide", "zsl", "map", 35.0, "inferred"),
        ("CLIP ViT-B/16 (softmax)", "nuswide", "standard", "map", 42.85, "issues"),
    ],
    columns=["method", "dataset", "setting", "metric", "value", "source"],
)


def summarize(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate evaluation rows (:data:`~s3a.multilabel.metrics.EVAL_COLUMNS` first, any extra
    columns such as the ``ov_*`` discovery metrics after), sorted by dataset, model, stage (pipeline
    order, :data:`STAGE_ORDER`), split and subset (:data:`~s3a.multilabel.metrics.SUBSETS` order).

    Raises:
        ValueError: a table lacks an evaluation column; two rows share a (dataset, model, stage,
            split, subset) key.
    """
    frames = [t for t in tables if len(t)]
    if not frames:
        return pd.DataFrame(columns=list(EVAL_COLUMNS))
    missing = sorted({c for t in frames for c in EVAL_COLUMNS if c not in t.columns})
    if missing:
        raise ValueError(f"multi-label metric tables lack the columns {missing}")
    summary = pd.concat(frames, ignore_index=True)
    extra = [c for c in summary.columns if c not in EVAL_COLUMNS]
    summary = summary[[*EVAL_COLUMNS, *extra]]
    duplicated = summary.duplicated(KEY_COLUMNS, keep=False)
    if duplicated.any():
        raise ValueError(f"duplicate multi-label metric rows:\n{summary.loc[duplicated, KEY_COLUMNS]}")
    stage_rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    subset_rank = {s: i for i, s in enumerate(SUBSETS)}

    def key(column: pd.Series) -> pd.Series:
        if column.name == "stage":
            return column.map(lambda s: (stage_rank.get(s, len(STAGE_ORDER)), s))
        if column.name == "subset":
            return column.map(lambda s: (subset_rank.get(s, len(SUBSETS)), s))
        return column

    return summary.sort_values(KEY_COLUMNS, key=key, kind="stable", ignore_index=True)


def _number(value: float) -> str:
    """One decimal, two where the source gives two (42.85)."""
    text = f"{value:.2f}"
    return text[:-1] if text.endswith("0") else text


def _published_for(datasets: Sequence[str]) -> pd.DataFrame:
    keep = PUBLISHED["dataset"].map(lambda kind: any(str(d).startswith(kind) for d in datasets))
    return PUBLISHED[keep]


#: what the published rows' source tags mean (printed under the table)
SOURCES_NOTE = (
    "[source]: sec = quoted by later work, readme = the authors' README, recalled = unverified, "
    "inferred = derived from a published gain, issues = a GitHub issue (protocols may differ); "
    "mAP gain = points over the prior best"
)


def summary_tables(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(ours, published)`` as shown: our rows (dataset, model, stage, split, subset, images, then
    mAP, CF1, OF1, F1@3, F1@5 in percent, one decimal, ``n/a`` where not defined, e.g. CF1/OF1 of
    softmax scores) and the published numbers (:data:`PUBLISHED`) of the matching datasets, one row
    per method, dataset and setting, each value with its source tag."""
    ours = summary[[*KEY_COLUMNS, "n_images", *SHOWN_METRICS]].rename(columns=SHOWN_METRICS)
    for header in SHOWN_METRICS.values():
        ours[header] = ours[header].map(lambda v: "n/a" if pd.isna(v) else f"{v:.1f}")
    published = _published_for(summary["dataset"].unique().tolist())
    if not len(published):
        return ours, pd.DataFrame(columns=["method", "dataset", "setting"])
    wide = published.assign(
        cell=[f"{_number(v)} [{s}]" for v, s in zip(published["value"], published["source"], strict=True)],
        metric=published["metric"].map(lambda m: {**SHOWN_METRICS, "map_gain": "mAP gain"}.get(m, m)),
    ).pivot_table(
        index=["method", "dataset", "setting"], columns="metric", values="cell", aggfunc="first", sort=False
    )
    order = [m for m in ("mAP", "F1@3", "F1@5", "mAP gain") if m in wide.columns]
    return ours, wide[order].fillna("-").reset_index()


def summary_markdown(summary: pd.DataFrame) -> str:
    """Markdown of :func:`summary_tables`: our rows, then the published numbers with their sources."""
    ours, published = summary_tables(summary)
    text = "Our results (percent):\n\n" + (
        ours.to_markdown(index=False, disable_numparse=True)
        if len(ours)
        else "(no multi-label evaluation rows)"
    )
    if len(published):
        text += f"\n\nPublished ({SOURCES_NOTE}):\n\n" + published.to_markdown(
            index=False, disable_numparse=True
        )
    return text


#: what each stage of the table is (the legend of the HTML page)
STAGE_LEGEND = {
    "zs_global": "CLIP zero-shot scores of the whole image",
    "zs_local": "zero-shot scores of the 3x3 tiles, reduced over the tiles",
    "zs_final": "CDUL's global-local aggregation of the two (the initial pseudo-labels)",
    "pseudo_train": "the pseudo-labels of the train images against their ground truth",
    "refined_<learner>": "the latent labels after gradient-alignment training",
    "linear / finetune / mldecoder": "the trained learner's predictions on the test images",
    "ov_exact / ov_hier": "open-vocabulary scores over the 20K names, exact or up the WordNet hierarchy",
}
#: what each metric column is
METRIC_LEGEND = {
    "mAP": "mean over labels of the average precision (ties grouped)",
    "CF1 / OF1": "per-class and overall F1 at the score threshold (multilabel.evaluate.threshold)",
    "F1@3 / F1@5": "F1 of each image's 3 or 5 best-scored labels",
}
NA_NOTE = (
    "n/a: the metric is not defined there: CF1 and OF1 of softmax stages (scores that sum to 1 over the "
    "labels have no meaningful threshold), or a subset without a positive label."
)


def summary_html(summary: pd.DataFrame, random_models: Sequence[str] = ()) -> str:
    """The page of :func:`summary_tables` in the Snakemake report (``results/report/multilabel.html``):
    styled like the gallery, with a legend of the stages and metrics, why a cell is ``n/a``, and a
    plain note when a model (``random_models``) has random weights."""
    from html import escape

    from s3a.gallery import STYLE

    ours, published = summary_tables(summary)
    legend = lambda items: "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in items.items())  # noqa: E731
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Multi-label results</title>',
        f"<style>{STYLE}table{{border-collapse:collapse;background:#fff}}td,th{{border:1px solid #ddd;"
        "padding:.25em .6em;text-align:right}}th{{background:#f0f0f0}}</style></head><body>",
        "<h1>Multi-label results</h1>",
    ]
    shown = sorted(set(random_models) & set(summary.get("model", pd.Series(dtype=str))))
    if shown:
        parts.append(
            f'<p class="meta no">Model {escape(", ".join(shown))} has random weights: these numbers show '
            "that the pipeline runs end to end, not how well the methods work.</p>"
        )
    parts += [
        '<section class="card"><h2>Our results (percent)</h2>',
        ours.to_html(index=False) if len(ours) else "<p>(no multi-label evaluation rows)</p>",
        f'<p class="meta">{escape(NA_NOTE)}</p></section>',
        f'<section class="card"><h2>Stages</h2><ul>{legend(STAGE_LEGEND)}</ul>',
        f"<h2>Metrics</h2><ul>{legend(METRIC_LEGEND)}</ul></section>",
    ]
    if len(published):
        parts += [
            '<section class="card"><h2>Published</h2>',
            f'<p class="meta">{escape(SOURCES_NOTE)}</p>',
            published.to_html(index=False),
            "</section>",
        ]
    return "\n".join([*parts, "</body></html>"]) + "\n"
