"""Evaluation metrics of spec section 7: exact top-1, Hungarian clustering accuracy, soft accuracy.

Units. The building blocks (:func:`top1_accuracy`, :func:`cluster_accuracy`, :meth:`SoftScorer.score`,
:func:`label_diagnostics`) return **fractions** (accuracies in [0, 1], cosine in [-1, 1]).
:func:`evaluate_predictions`, which produces the row written to ``metrics.parquet``, reports
``top1``, ``cluster_acc`` and ``soft_acc`` in **percent** (0-100), the unit of the paper's tables,
and ``oov_fraction`` as a fraction.

Labels. A prediction is an index into the vocabulary (``vocab_index``, 0..V-1). The ground truth comes
in two forms: ``gt_vocab`` is the vocabulary index of the image's class name (``-1`` when the name is
not in the vocabulary, the RZSC-OOV case, see :func:`gt_vocab_index`), and ``gt_class`` is the class
the clustering accuracy matches against. :func:`stage_metrics` makes ``gt_class`` the *named* class
(:func:`named_classes`): classes that share a vocabulary name are one class, as in the official
evaluation, so ImageNet-1K has 997 classes (``crane``, ``cardigan`` and ``maillot`` each name two
wnids) and both accuracies score a name, never a wnid the name cannot tell apart.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from s3a.soft import (  # noqa: F401 (re-exported: s3a.metrics was their home)
    OFFLINE_MODEL_NAME,
    SoftScorer,
    default_offline_model,
    load_soft_scorer,
)
from s3a.vocab import normalize_name, wnid_to_index

if TYPE_CHECKING:
    pass

__all__ = [
    "BEST_SELECTION",
    "SoftScorer",
    "best_epoch_row",
    "candidate_recall",
    "cluster_accuracy",
    "default_offline_model",
    "epoch_metrics",
    "evaluate_predictions",
    "gt_vocab_index",
    "label_diagnostics",
    "load_soft_scorer",
    "named_classes",
    "stage_metrics",
    "top1_accuracy",
]

log = logging.getLogger(__name__)


def _labels(array: np.ndarray | Sequence[int], what: str) -> np.ndarray:
    out = np.asarray(array)
    if out.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {out.shape}")
    if out.size and not np.issubdtype(out.dtype, np.integer):
        raise TypeError(f"{what} must hold integer labels, got dtype {out.dtype}")
    return out.astype(np.int64, copy=False)


def _same_length(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same length, got {a.shape[0]} and {b.shape[0]}")


def top1_accuracy(pred_vocab: np.ndarray, gt_vocab: np.ndarray) -> float:
    """Exact-name top-1 accuracy over the whole vocabulary (spec 7.1).

    Args:
        pred_vocab: (N,) int, predicted vocabulary index per image.
        gt_vocab: (N,) int, ground-truth vocabulary index per image; ``-1`` (out of vocabulary)
            never matches, so it counts as an error.

    Returns:
        Fraction of images with ``pred_vocab == gt_vocab`` in [0, 1]; NaN when N = 0.
    """
    pred, gt = _labels(pred_vocab, "pred_vocab"), _labels(gt_vocab, "gt_vocab")
    _same_length(pred, gt, "pred_vocab and gt_vocab")
    if pred.size == 0:
        return math.nan
    return float(np.count_nonzero((pred == gt) & (gt >= 0)) / pred.size)


def _confusion(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(M, K) counts of (distinct prediction, distinct GT label) pairs, both re-indexed densely."""
    _, pred_idx = np.unique(pred, return_inverse=True)
    _, gt_idx = np.unique(gt, return_inverse=True)
    m, k = int(pred_idx.max()) + 1, int(gt_idx.max()) + 1
    flat = pred_idx.reshape(-1).astype(np.int64) * k + gt_idx.reshape(-1)
    return np.bincount(flat, minlength=m * k).reshape(m, k)


def cluster_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """Hungarian clustering accuracy (spec 7.2).

    The M distinct predictions are re-indexed 0..M-1 and the K distinct GT labels 0..K-1; the one-to-one
    assignment of predictions to GT labels maximising the number of matched images is found, and the
    accuracy is matched / N. Predictions beyond K (M > K) stay unmatched, so their images count as errors.

    The spec pads the confusion to a square max(M, K) matrix; padded rows/columns are all zero, so
    every square assignment restricted to the real block is a rectangular assignment with the same
    value and vice versa. The rectangular (M, K) problem is solved directly, which is what keeps
    N = 1.3M, M = 20K, K = 1000 to about a second (confusion via ``np.bincount``).

    Args:
        pred: (N,) int, predicted labels (e.g. vocabulary indices; any integers).
        gt: (N,) int, ground-truth class labels (any integers).

    Returns:
        Accuracy in [0, 1]; NaN when N = 0.
    """
    pred, gt = _labels(pred, "pred"), _labels(gt, "gt")
    _same_length(pred, gt, "pred and gt")
    if pred.size == 0:
        return math.nan
    confusion = _confusion(pred, gt)
    rows, cols = linear_sum_assignment(confusion, maximize=True)
    return float(confusion[rows, cols].sum() / pred.size)


def gt_vocab_index(
    wnids: Sequence[str | None],
    class_names: Sequence[str],
    vocabulary: pd.DataFrame,
) -> np.ndarray:
    """Vocabulary index of each image's ground truth (spec 1.1, 2.3).

    Per image: the entry holding the image's wnid among its ``synset_ids`` when the wnid is given and
    known; otherwise the entry whose name equals the class name lower-cased with spaces as
    underscores (``"American bulldog"`` -> ``american_bulldog``); otherwise ``-1`` (out of vocabulary).
    Work is done once per distinct wnid and per distinct class name.

    Args:
        wnids: (N,) wnid strings, or None / NaN / "" where the dataset has none.
        class_names: (N,) class-name strings.
        vocabulary: table from :func:`s3a.vocab.build_vocabulary` (``vocab_index``, ``name``, ``synset_ids``).

    Returns:
        (N,) int64 vocabulary indices, ``-1`` for out-of-vocabulary images.
    """
    wnid_series = pd.Series(list(wnids), dtype=object)
    name_series = pd.Series(list(class_names), dtype=object)
    if len(wnid_series) != len(name_series):
        raise ValueError(
            f"wnids and class_names must have the same length, got {len(wnid_series)} and {len(name_series)}"
        )
    if len(wnid_series) == 0:
        return np.zeros(0, dtype=np.int64)
    by_wnid = wnid_to_index(vocabulary)
    by_name = {str(n): int(i) for n, i in zip(vocabulary["name"], vocabulary["vocab_index"], strict=True)}

    wnid_codes, wnid_uniques = pd.factorize(wnid_series, use_na_sentinel=True)
    wnid_lookup = np.array([by_wnid.get(str(w).strip(), -1) for w in wnid_uniques] + [-1], dtype=np.int64)
    from_wnid = wnid_lookup[wnid_codes]  # code -1 (missing wnid) picks the trailing -1

    name_codes, name_uniques = pd.factorize(name_series, use_na_sentinel=True)
    name_lookup = np.array([by_name.get(normalize_name(n), -1) for n in name_uniques] + [-1], dtype=np.int64)
    from_name = name_lookup[name_codes]

    return np.where(from_wnid >= 0, from_wnid, from_name)


def named_classes(gt_vocab: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Ground-truth class of each image by *name*: classes sharing a vocabulary name are merged.

    The image's vocabulary index when its name is in the vocabulary, otherwise its class name
    (lower-cased, spaces as underscores, :func:`s3a.vocab.normalize_name`), densely re-indexed. On
    ImageNet-1K the two ``crane`` wnids (bird, machine), the two ``cardigan`` wnids (corgi, sweater)
    and the two ``maillot`` wnids become one class each: 997 classes. A dataset whose classes all have
    distinct names keeps its classes.

    Args:
        gt_vocab: (N,) int, from :func:`gt_vocab_index` (``-1`` out of vocabulary).
        class_names: (N,) class-name strings.

    Returns:
        (N,) int64 labels in ``0..K'-1`` (``K'`` distinct names), ordered by first appearance.
    """
    gt = _labels(gt_vocab, "gt_vocab")
    if len(class_names) != gt.size:
        raise ValueError(f"class_names must hold one name per image ({gt.size}), got {len(class_names)}")
    name_codes, uniques = pd.factorize(pd.Series(list(class_names), dtype=object))
    norm_codes, _ = pd.factorize(pd.Series([normalize_name(str(u)) for u in uniques], dtype=object))
    oov_code = np.append(norm_codes, -1)[name_codes]  # per image: its normalised name's code
    key = np.where(gt >= 0, gt, -2 - oov_code)  # in-vocabulary: the vocab index; else a negative code
    return pd.factorize(key)[0].astype(np.int64)


def label_diagnostics(pred_vocab: np.ndarray, gt_vocab: np.ndarray) -> dict[str, float]:
    """Auxiliary diagnostics logged during CVPR (spec 7.4).

    Args:
        pred_vocab: (N,) int, predicted (e.g. structural) vocabulary index per image.
        gt_vocab: (N,) int, GT vocabulary index per image, ``-1`` for out of vocabulary.

    Returns:
        ``instance_acc``: fraction of images with pred == gt (as :func:`top1_accuracy`);
        ``missing_labels``: number of distinct in-vocabulary GT names that are never predicted;
        ``iou_vocab``: |GT names correctly hit at least once| / |predicted names union GT names|
        (GT ``-1`` excluded from the GT name set).
    """
    pred, gt = _labels(pred_vocab, "pred_vocab"), _labels(gt_vocab, "gt_vocab")
    _same_length(pred, gt, "pred_vocab and gt_vocab")
    gt_names = np.unique(gt[gt >= 0])
    pred_names = np.unique(pred)
    hit = np.unique(gt[(pred == gt) & (gt >= 0)])
    union = np.union1d(pred_names, gt_names)
    return {
        "instance_acc": top1_accuracy(pred, gt),
        "missing_labels": int(np.setdiff1d(gt_names, pred_names, assume_unique=True).size),
        "iou_vocab": float(hit.size / union.size) if union.size else math.nan,
    }


def candidate_recall(partition: np.ndarray, candidates: pd.DataFrame, gt_vocab: np.ndarray) -> float:
    """Share of clusters whose majority ground-truth name is among their candidates (spec 7.4).

    Args:
        partition: ``(N,)`` the vote partition the candidates were drawn from.
        gt_vocab: ``(N,)`` ground-truth vocabulary index per image (``-1`` out of vocabulary; such
            clusters are left out).
    """
    majority = (
        pd.DataFrame({"cluster": partition, "gt": gt_vocab}).groupby("cluster").gt.agg(lambda g: g.mode()[0])
    )
    cand = candidates.groupby("cluster").vocab_index.apply(set)
    hits = [int(majority[c] in cand.get(c, set())) for c in majority.index if majority[c] >= 0]
    return float(np.mean(hits)) if hits else float("nan")


def evaluate_predictions(
    pred_vocab: np.ndarray,
    gt_vocab: np.ndarray,
    gt_class: np.ndarray,
    vocab_names: Sequence[str],
    gt_names: Sequence[str],
    scorer: SoftScorer | None = None,
) -> dict[str, float]:
    """One metrics row for one (dataset, model, stage, split).

    Args:
        pred_vocab: (N,) int, predicted vocabulary index per image.
        gt_vocab: (N,) int, GT vocabulary index per image, ``-1`` when out of vocabulary.
        gt_class: (N,) int, the dataset's class index per image (for the clustering accuracy).
        vocab_names: (V,) vocabulary names, indexed by ``vocab_index`` (to turn predictions into strings).
        gt_names: (N,) GT class-name string per image (the soft metric's reference).
        scorer: soft-accuracy scorer, or None to skip it.

    Returns:
        ``{"n": N, "top1": %, "cluster_acc": %, "soft_acc": % or NaN, "oov_fraction": fraction}``;
        the three accuracies are in percent (0-100).
    """
    pred, gt = _labels(pred_vocab, "pred_vocab"), _labels(gt_vocab, "gt_vocab")
    cls = _labels(gt_class, "gt_class")
    _same_length(pred, gt, "pred_vocab and gt_vocab")
    _same_length(pred, cls, "pred_vocab and gt_class")
    if len(gt_names) != pred.size:
        raise ValueError(f"gt_names must hold one name per image ({pred.size}), got {len(gt_names)}")
    n = int(pred.size)
    if n and (pred.min() < 0 or pred.max() >= len(vocab_names)):
        raise ValueError(f"pred_vocab holds indices outside the vocabulary 0..{len(vocab_names) - 1}")
    soft = math.nan
    if scorer is not None and n:
        names = np.asarray(vocab_names, dtype=object)
        soft = 100.0 * scorer.score(names[pred], gt_names)
    return {
        "n": n,
        "top1": 100.0 * top1_accuracy(pred, gt),
        "cluster_acc": 100.0 * cluster_accuracy(pred, cls),
        "soft_acc": soft,
        "oov_fraction": float(np.mean(gt < 0)) if n else math.nan,
    }


def stage_metrics(
    manifest: pd.DataFrame,
    vocabulary: pd.DataFrame,
    predictions: dict[str, pd.DataFrame],
    scorer: SoftScorer | None = None,
    column: str = "pred_vocab_index",
) -> pd.DataFrame:
    """Metric rows of one stage: one per split and label set.

    Args:
        manifest: the dataset manifest (image_id, class_index, class_name, wnid).
        vocabulary: vocab_index, name, synset_ids.
        predictions: split -> table with ``image_id`` and ``column`` (a vocabulary index); when it
            also has ``pred_class_index`` (classic zero-shot over the dataset's own names), a second
            row with label_set ``class_names`` scores it against the class index.
        column: the prediction column holding vocabulary indices.

    Returns:
        DataFrame with columns split, label_set, the keys of :func:`evaluate_predictions`, and for
        the vocabulary rows the spec 7.4 diagnostics ``missing_labels`` and ``iou_vocab``.
    """
    by_id = manifest.set_index("image_id")
    gt_all = gt_vocab_index(list(manifest.wnid), list(manifest.class_name), vocabulary)
    gt_vocab = pd.Series(gt_all, index=manifest.image_id)
    # the clustering accuracy's classes are the named classes (997 on ImageNet-1K)
    named = pd.Series(named_classes(gt_all, list(manifest.class_name)), index=manifest.image_id)
    # classes that share a name share one label in the class_names row too (its prediction, an
    # argmax over the class names, cannot tell them apart either)
    classes = manifest.drop_duplicates("class_index")
    name_of_class = pd.Series(named.loc[classes.image_id].to_numpy(), index=classes.class_index.to_numpy())
    label_names = list(pd.Series(manifest.class_name.to_numpy()).groupby(named.to_numpy()).first())
    names = vocabulary.sort_values("vocab_index").name.tolist()
    rows = []
    for split, pred in predictions.items():
        ids = pred.image_id.to_numpy()
        gt_class = named.loc[ids].to_numpy()
        gt_names = list(by_id.class_name.loc[ids])
        gt = gt_vocab.loc[ids].to_numpy()
        metrics = evaluate_predictions(pred[column].to_numpy(), gt, gt_class, names, gt_names, scorer)
        diagnostics = label_diagnostics(pred[column].to_numpy(), gt)
        rows.append(
            {
                "split": split,
                "label_set": "vocabulary",
                **metrics,
                "missing_labels": diagnostics["missing_labels"],
                "iou_vocab": diagnostics["iou_vocab"],
            }
        )
        if "pred_class_index" in pred:
            own = name_of_class.loc[pred.pred_class_index.to_numpy()].to_numpy()
            metrics = evaluate_predictions(own, gt_class, gt_class, label_names, gt_names, scorer)
            rows.append({"split": split, "label_set": "class_names", **metrics})
    return pd.DataFrame(rows)


#: how the ``student_best`` row was chosen, written beside it in the summary and the report
BEST_SELECTION = "best epoch, selected on the test split (as the official code; optimistic)"


def epoch_metrics(
    manifest: pd.DataFrame,
    vocabulary: pd.DataFrame,
    test_epochs: pd.DataFrame,
    scorer: SoftScorer | None = None,
    column: str = "student_vocab_index",
) -> pd.DataFrame:
    """Metric rows of the test predictions of every evaluated training epoch.

    Args:
        test_epochs: ``image_id``, ``epoch`` and ``column`` (a vocabulary index), as written by the
            training (``test_epochs.parquet``).

    Returns:
        One :func:`stage_metrics` vocabulary row (split ``test``) per epoch, with an ``epoch`` column,
        sorted by epoch. Cost: one evaluation per epoch (N_test images each).
    """
    rows = []
    for epoch, group in test_epochs.groupby("epoch", sort=True):
        metrics = stage_metrics(manifest, vocabulary, {"test": group}, scorer, column)
        metrics.insert(0, "epoch", int(epoch))
        rows.append(metrics[metrics.label_set == "vocabulary"])
    if not rows:
        raise ValueError("no evaluated epoch in the test predictions: was the test split empty?")
    return pd.concat(rows, ignore_index=True)


def best_epoch_row(per_epoch: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The row of :func:`epoch_metrics` with the highest ``metric`` (the earliest epoch on ties).

    This is how the official code keeps its "best" model: the maximum over epochs of the student's
    test accuracy (the soft score for out-of-vocabulary sets), i.e. selected on the test split. When
    ``metric`` is NaN in every row (no soft scorer), the cluster accuracy decides instead.

    Returns:
        a one-row frame with ``selected_by`` (the metric that decided) and ``selection``.
    """
    if metric not in per_epoch or per_epoch[metric].isna().all():
        log.warning("no %s in any epoch: selecting the best epoch by cluster_acc", metric)
        metric = "cluster_acc"
    best = per_epoch.loc[[per_epoch[metric].idxmax()]].reset_index(drop=True)
    best["selected_by"] = metric
    best["selection"] = BEST_SELECTION
    return best


def add_skipped(rows: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Insert after ``n`` the column ``skipped``: images of each row's split with no prediction
    (unreadable files), i.e. the split's manifest size minus ``n``. Returns ``rows`` (changed in place)."""
    sizes = manifest.split.value_counts()
    rows.insert(rows.columns.get_loc("n") + 1, "skipped", [int(sizes.get(s, 0)) for s in rows.split])
    rows["skipped"] -= rows["n"]
    return rows
