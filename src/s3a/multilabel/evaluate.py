"""Evaluation of one stage of the CDUL pipeline (rule ``evaluate_multilabel``): scores -> metrics rows.

=================  =========================================  ===================================
stage              ``scores`` table                           scores evaluated
=================  =========================================  ===================================
``zs_global``      ``ml/pseudo/test``                          ``S_g``
``zs_local``       ``ml/pseudo/test``                          ``S_agg`` under the pseudo params
``zs_final``       ``ml/pseudo/test``                          ``S_final`` under the pseudo params
``pseudo_train``   ``ml/pseudo/train``                         ``S_final`` (the initial labels)
``refined_<L>``    ``ml/<L>/labels_refined`` (train split)     ``y``, the learner's refined labels
``<L>``            ``ml/<L>/{split}`` (``image_id, scores``)   the learner's predictions
=================  =========================================  ===================================

``<L>`` is a learner (``linear``, ``finetune``, ``mldecoder``). The softmax stages (``zs_*``,
``pseudo_train``) are not thresholded (CP..OF1 NaN). Subsets: ``all``, plus ``small`` when some
positive's largest instance is under ``small_area_px``; with ``setting: zsl`` also ``seen`` and the ZSL
(subset ``unseen``) and GZSL (subset ``gzsl``) rows of :func:`s3a.multilabel.decoder.zsl.evaluate_zsl`.
For the ZSL row of a softmax stage the scores of the unseen labels are renormalised per image (for
``zs_global`` this is exactly the softmax over the unseen labels; for the aggregated stages it is the
renormalised aggregate).

Cost: the dense ``(N, C)`` float64 scores and targets of one split (NUS-WIDE test ~83k x 1,006:
0.67 GB of scores).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa

from s3a.config.multilabel import LEARNERS as ALL_LEARNERS
from s3a.multilabel.aggregate import PseudoParams, aggregate, read_scores
from s3a.multilabel.data.tables import check_split, list_matrix
from s3a.multilabel.decoder.zsl import evaluate_zsl
from s3a.multilabel.metrics import EVAL_COLUMNS, EvalParams, evaluate_stage

__all__ = ["ZS_STAGES", "SETTINGS", "stage_names", "stage_scores", "evaluate_ml_stage"]

log = logging.getLogger(__name__)
ZS_STAGES = ("zs_global", "zs_local", "zs_final")
SETTINGS = ("standard", "zsl")


def stage_names() -> tuple[str, ...]:
    """Every stage name: the zero-shot ones, ``pseudo_train``, ``refined_<L>`` and ``<L>``."""
    return ZS_STAGES + ("pseudo_train",) + tuple(f"refined_{x}" for x in ALL_LEARNERS) + ALL_LEARNERS


def stage_scores(
    stage: str, table: pa.Table, pseudo: PseudoParams | None = None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(image_ids (N,), scores (N, C) float64, thresholded)`` of ``stage`` from its table (module
    docstring); ``pseudo`` re-aggregates the pseudo-label tables (default :class:`PseudoParams`).
    Scores are ranked as float64: a float32 copy would tie every score within 6e-8 of 1.

    Raises:
        ValueError: an unknown stage or a table without the stage's column.
    """
    if stage not in stage_names():
        raise ValueError(f"unknown multi-label stage {stage!r}; expected one of {stage_names()}")
    if stage in ZS_STAGES or stage == "pseudo_train":
        ids, views, _ = read_scores(table)
        agg, final = aggregate(views, pseudo or PseudoParams())
        scores = {"zs_global": views.s_global, "zs_local": agg}.get(stage, final)
        return ids, scores, False
    column = "y" if stage.startswith("refined_") else "scores"
    ids = table.column("image_id").to_numpy().astype(np.int64)
    return ids, list_matrix(table, column).astype(np.float64, copy=False), True


def evaluate_ml_stage(
    stage: str,
    table: pa.Table,
    manifest: pd.DataFrame,
    labels: pd.DataFrame,
    label_set: pd.DataFrame,
    split: str,
    setting: str = "standard",
    params: EvalParams | None = None,
    pseudo: PseudoParams | None = None,
    dataset: str = "",
    model: str = "",
) -> pd.DataFrame:
    """Metrics rows (:data:`~s3a.multilabel.metrics.EVAL_COLUMNS`) of one stage on one split.

    Args:
        stage: a name of :func:`stage_names`; ``table`` its scores table (module docstring).
        manifest: every image of ``table`` must be a ``split`` image of it (missing ones are logged).
        labels, label_set: the dataset's ground truth and label set.
        setting: ``standard`` or ``zsl`` (the label set must then mark unseen labels).
        params: ``multilabel.evaluate``; pseudo: ``multilabel.pseudo`` (the ``zs_*`` and
            ``pseudo_train`` stages).
        dataset, model: copied into the rows with ``stage`` and ``split``.

    Raises:
        ValueError: an unknown stage or setting, scores over another label set, images outside the
            split, or ``zsl`` without unseen labels.
    """
    params = params or EvalParams()
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    ids, scores, thresholded = stage_scores(stage, table, pseudo)
    n_labels = len(label_set)
    if scores.shape[1] != n_labels:
        raise ValueError(
            f"stage {stage}: scores over {scores.shape[1]} labels but the label set has {n_labels} "
            "(supervision gt_seen refines the seen labels only: it has no refined stage)"
        )
    check_split(manifest, ids, split, f"stage {stage}")
    keys = {"dataset": dataset, "model": model, "stage": stage, "split": split}
    # the small subset where the dataset has small objects (NaN areas compare False)
    has_small = (labels["max_instance_area"].to_numpy(dtype=np.float64) < params.small_area_px).any()
    subsets = ("all", "seen") if setting == "zsl" else ("all",)
    frames = [
        evaluate_stage(
            ids, scores, labels, label_set, subsets + (("small",) if has_small else ()), params, thresholded,
            **keys,
        )
    ]  # fmt: skip
    if setting == "zsl":
        unseen = ~label_set.sort_values("label_index")["seen"].to_numpy(dtype=bool)
        if not unseen.any():
            raise ValueError("setting zsl needs unseen labels in label_set.seen (NUS-WIDE: label_space all)")
        zsl = scores[:, unseen]
        if not thresholded:  # a softmax over all labels: renormalise over the unseen ones
            zsl = zsl / np.clip(zsl.sum(axis=1, keepdims=True), 1e-12, None)
        frames.append(evaluate_zsl(ids, zsl, labels, label_set, "zsl", params, thresholded, **keys))
        frames.append(evaluate_zsl(ids, scores, labels, label_set, "gzsl", params, thresholded, **keys))
    out = pd.concat(frames, ignore_index=True)
    log.info("stage %s on %s: %d images, mAP(all) %.2f", stage, split, len(ids), out["map"].iloc[0])
    return out[list(EVAL_COLUMNS)]
