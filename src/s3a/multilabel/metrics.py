"""Multi-label metrics (spec 9): mAP, CP/CR/CF1, OP/OR/OF1, top-K P/R/F1, evaluation subsets.

Conventions: ``y`` ``(N, C)`` bool targets, ``scores`` ``(N, C)`` float (higher = more likely),
``mask`` ``(N, C)`` bool, True = the entry is left out of every count (VOC difficult-only labels;
large objects in the ``small`` subset). Values are percentages.

* AP of label c: :func:`sklearn.metrics.average_precision_score` on column c's unmasked entries
  (non-interpolated, tied scores grouped). mAP = mean over labels with >= 1 positive; labels
  without positives are excluded and counted (scikit-learn's macro mean would score them 0).
* CP = mean_c TP/(TP+FP), CR = mean_c TP/(TP+FN), CF1 = 2·CP·CR/(CP+CR) (harmonic of the means,
  not the mean per-label F1); OP/OR/OF1 from counts summed over labels; zero division -> 0.
* P@K = ΣTP/(N·K), R@K = ΣTP/Σ|Y_i|, F1@K harmonic; each image predicts its K highest labels
  (ties: lower label index first).

Cost: dense ``(N, C)`` inputs, float64 scores (every stage hands them over as float64: a float32
softmax or sigmoid score within 6e-8 of 1 rounds to 1.0 and ties, see
:mod:`s3a.multilabel.aggregate`) — COCO val 40k x 80 (26 MB), NUS-WIDE test ~83k x 1,006 (0.67 GB);
AP sorts each column once (N log N per label). Never used over the 20K vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

__all__ = [
    "EvalParams",
    "SUBSETS",
    "THRESHOLD_COLUMNS",
    "average_precisions",
    "mean_average_precision",
    "threshold_metrics",
    "topk_metrics",
    "subset_mask",
    "evaluate",
    "EVAL_COLUMNS",
    "evaluate_stage",
]

#: evaluation subsets (spec 9): ``all`` every image and label; ``seen`` / ``unseen`` the labels of
#: that kind and the images with a positive among them (``unseen``: the ZSL protocol); ``gzsl`` every
#: label, the images with at least one positive (the GZSL protocol); ``small`` every image, large
#: positives masked
SUBSETS = ("all", "seen", "unseen", "gzsl", "small")
EVAL_COLUMNS = (
    "dataset", "model", "stage", "split", "subset", "n_images", "n_labels", "n_labels_no_pos", "map",
    "c_prec", "c_rec", "c_f1", "o_prec", "o_rec", "o_f1", "p_at_3", "r_at_3", "f1_at_3", "p_at_5",
    "r_at_5", "f1_at_5",
)  # fmt: skip
#: the columns of :func:`threshold_metrics` (sigmoid scores only)
THRESHOLD_COLUMNS = ("c_prec", "c_rec", "c_f1", "o_prec", "o_rec", "o_f1")


@dataclass(frozen=True)
class EvalParams:
    """Settings of evaluation (config ``multilabel.evaluate``).

    Attributes:
        threshold: score at or above which a label is predicted (CP/CR/OP/OR); meaningful for
            sigmoid outputs.
        topk: the K of the top-K metrics.
        small_area_px: a positive counts in the ``small`` subset when its largest instance is under
            this many px² (32² = 1024, COCO's small bucket).
    """

    threshold: float = 0.5
    topk: tuple[int, ...] = (3, 5)
    small_area_px: float = 1024.0


def _check(y: np.ndarray, scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if y.shape != scores.shape or y.ndim != 2:
        raise ValueError(f"targets {y.shape} and scores {scores.shape} must be equal (N, C) shapes")
    if mask is None:
        return np.zeros(y.shape, dtype=bool)
    if mask.shape != y.shape:
        raise ValueError(f"mask {mask.shape} must match targets {y.shape}")
    return mask.astype(bool)


def average_precisions(y: np.ndarray, scores: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(C,)`` AP per label in [0, 1] (NaN for labels without an unmasked positive)."""
    mask = _check(y, scores, mask)
    out = np.full(y.shape[1], np.nan)
    for c in range(y.shape[1]):
        keep = ~mask[:, c]
        yc = y[keep, c].astype(bool)
        if yc.any():
            out[c] = average_precision_score(yc, scores[keep, c])
    return out


def mean_average_precision(
    y: np.ndarray, scores: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, int]:
    """``(mAP in percent over labels with positives, number of labels without positives)``;
    mAP is NaN when no label has a positive."""
    ap = average_precisions(y, scores, mask)
    n_no = int(np.isnan(ap).sum())
    return (float(np.nanmean(ap) * 100.0) if n_no < len(ap) else float("nan")), n_no


def _div(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b > 0)


def _f1(p: float, r: float) -> float:
    return float(2 * p * r / (p + r)) if p + r > 0 else 0.0


def threshold_metrics(
    y: np.ndarray, scores: np.ndarray, threshold: float = 0.5, mask: np.ndarray | None = None
) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 (percent) of the predictions ``scores >= threshold``; masked
    entries count as neither positive nor negative."""
    mask = _check(y, scores, mask)
    keep = ~mask
    pred = (scores >= threshold) & keep
    yy = y.astype(bool) & keep
    tp = (pred & yy).sum(axis=0)
    fp = (pred & ~yy).sum(axis=0)
    fn = (~pred & yy).sum(axis=0)
    cp, cr = float(_div(tp, tp + fp).mean()), float(_div(tp, tp + fn).mean())
    op, orr = float(_div(tp.sum(), tp.sum() + fp.sum())), float(_div(tp.sum(), tp.sum() + fn.sum()))
    values = (cp, cr, _f1(cp, cr), op, orr, _f1(op, orr))
    return {name: 100 * value for name, value in zip(THRESHOLD_COLUMNS, values, strict=True)}


def topk_metrics(
    y: np.ndarray, scores: np.ndarray, ks: Sequence[int] = (3, 5), mask: np.ndarray | None = None
) -> dict[str, float]:
    """``p_at_K, r_at_K, f1_at_K`` (percent) for each K; a masked entry among the top K is not a
    true positive, and masked positives are not counted in ``|Y_i|``."""
    mask = _check(y, scores, mask)
    n, c = y.shape
    yy = y.astype(bool) & ~mask
    order = np.argsort(-scores, axis=1, kind="stable")
    out: dict[str, float] = {}
    n_pos = yy.sum()
    for k in ks:
        top = order[:, : min(k, c)]
        tp = np.take_along_axis(yy, top, axis=1).sum()
        p = float(tp / (n * k)) if n else 0.0
        r = float(tp / n_pos) if n_pos else 0.0
        out.update({f"p_at_{k}": 100 * p, f"r_at_{k}": 100 * r, f"f1_at_{k}": 100 * _f1(p, r)})
    return out


def subset_mask(
    subset: str,
    y: np.ndarray,
    difficult: np.ndarray | None,
    max_area: np.ndarray | None,
    params: EvalParams = EvalParams(),
) -> np.ndarray:
    """``(N, C)`` mask of a subset: difficult-only positives always; for ``small`` also the positives
    whose largest instance is at least ``small_area_px`` (or unknown)."""
    mask = np.zeros(y.shape, bool) if difficult is None else difficult.astype(bool).copy()
    if subset == "small":
        if max_area is None:
            raise ValueError("the small subset needs instance areas")
        mask |= y.astype(bool) & ~(np.nan_to_num(max_area, nan=np.inf) < params.small_area_px)
    return mask


def evaluate(
    y: np.ndarray,
    scores: np.ndarray,
    difficult: np.ndarray | None = None,
    max_area: np.ndarray | None = None,
    seen: np.ndarray | None = None,
    subsets: Sequence[str] = ("all",),
    params: EvalParams = EvalParams(),
    thresholded: bool = True,
    **keys: str,
) -> list[dict[str, object]]:
    """One metrics row (columns :data:`EVAL_COLUMNS`) per subset.

    ``seen``/``unseen`` keep the label columns where ``seen`` (``(C,)`` bool) is True/False and the
    images with at least one positive among them; ``gzsl`` keeps every label column and the images
    with at least one positive; ``small`` masks large positives (see
    :func:`subset_mask`). ``thresholded=False`` (softmax scores) leaves CP..OF1 NaN; a subset without
    any positive (no small object) leaves every metric NaN. ``keys`` (``dataset, model, stage,
    split``) are copied into each row.
    """
    rows = []
    for subset in subsets:
        if subset not in SUBSETS:
            raise ValueError(f"unknown subset {subset!r}; expected one of {SUBSETS}")
        cols = np.arange(y.shape[1])
        if subset in ("seen", "unseen"):
            if seen is None:
                raise ValueError(f"subset {subset!r} needs the label_set's seen column")
            cols = np.flatnonzero(seen if subset == "seen" else ~np.asarray(seen, bool))
        yy, ss = y[:, cols], scores[:, cols]
        mask = subset_mask(subset, y, difficult, max_area, params)[:, cols]
        rows_keep = np.ones(len(y), bool) if subset in ("all", "small") else yy.any(axis=1)
        yy, ss, mask = yy[rows_keep], ss[rows_keep], mask[rows_keep]
        m, n_no = mean_average_precision(yy, ss, mask)
        row: dict[str, object] = {k: keys.get(k, "") for k in ("dataset", "model", "stage", "split")}
        row.update(subset=subset, n_images=int(len(yy)), n_labels=int(len(cols)), n_labels_no_pos=n_no, map=m)
        if thresholded:  # softmax scores: no threshold is meaningful, the columns stay NaN
            row.update(threshold_metrics(yy, ss, params.threshold, mask))
        else:
            row.update(dict.fromkeys(THRESHOLD_COLUMNS, float("nan")))
        row.update(topk_metrics(yy, ss, params.topk, mask))
        if not (yy.astype(bool) & ~mask).any():  # no positive left (e.g. no small object): undefined
            row.update(dict.fromkeys(EVAL_COLUMNS[EVAL_COLUMNS.index("c_prec") :], float("nan")))
        rows.append(row)
    return rows


def evaluate_stage(
    image_ids: np.ndarray,
    scores: np.ndarray,
    labels: pd.DataFrame,
    label_set: pd.DataFrame,
    subsets: Sequence[str] = ("all",),
    params: EvalParams = EvalParams(),
    thresholded: bool = True,
    **keys: str,
) -> pd.DataFrame:
    """Metrics rows (:data:`EVAL_COLUMNS`) of one stage and split from a ``labels`` and a
    ``label_set`` table (:mod:`s3a.multilabel.data.tables`): ``scores`` ``(N, C)`` for ``image_ids``
    ``(N,)``.

    Difficult-only positives are masked in every subset; ``small`` needs instance areas."""
    from s3a.multilabel.data.tables import label_matrix

    y, difficult, area = label_matrix(labels, image_ids, len(label_set))
    seen = label_set["seen"].to_numpy(dtype=bool)
    rows = evaluate(y, scores, difficult, area, seen, subsets, params, thresholded, **keys)
    return pd.DataFrame(rows, columns=list(EVAL_COLUMNS))
