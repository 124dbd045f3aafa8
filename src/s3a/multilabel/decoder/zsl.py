"""Ground-truth supervision and the ZSL/GZSL protocol of the CLIP-Decoder head (spec 7 and 9).

``supervision: gt_seen`` (the benchmark protocol, NUS-WIDE 925 seen / 81 unseen / 1,006 labels):
:func:`zsl_split` keeps the train images with at least one *seen* label and the seen label
columns; :func:`gt_targets` gives their hard targets. ZSL testing uses the test images with at
least one *unseen* label, scored over the unseen labels only; GZSL the test images with at least
one label, scored over all labels (:class:`ZslSplit` holds both image sets).
``supervision: pseudo`` reads CDUL's pseudo-labels instead
(:func:`s3a.multilabel.aggregate.pseudo_targets`).

:func:`evaluate_zsl` gives the ZSL (subset ``unseen``) and GZSL (subset ``gzsl``) metrics rows
through :func:`s3a.multilabel.metrics.evaluate`: mAP and P/R/F1 at top-3/top-5 (and CP..OF1 for
sigmoid scores).

Cost: the dense targets and scores are ``(n, C)`` over the label set (NUS-WIDE train ~150k x 925
float32: 0.55 GB; test ~100k x 1,006: 0.4 GB); everything else is linear in the labels table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from s3a.multilabel.data.tables import label_matrix
from s3a.multilabel.metrics import EVAL_COLUMNS, EvalParams, evaluate

__all__ = [
    "SUPERVISIONS",
    "ZSL_SETTINGS",
    "ZslSplit",
    "zsl_split",
    "gt_targets",
    "evaluate_zsl",
]

SUPERVISIONS = ("pseudo", "gt_seen")
ZSL_SETTINGS = ("zsl", "gzsl")


@dataclass(frozen=True)
class ZslSplit:
    """Images and labels of the ZSL/GZSL protocol (ids are ``image_id`` values, labels
    ``label_index`` values, all sorted).

    Attributes:
        train_ids: train images with at least one seen label.
        seen: the seen labels (training targets).
        unseen: the unseen labels (ZSL scores).
        zsl_test_ids: test images with at least one unseen label.
        gzsl_test_ids: test images with at least one label.
    """

    train_ids: np.ndarray
    seen: np.ndarray
    unseen: np.ndarray
    zsl_test_ids: np.ndarray
    gzsl_test_ids: np.ndarray


def zsl_split(manifest: pd.DataFrame, labels: pd.DataFrame, label_set: pd.DataFrame) -> ZslSplit:
    """The ZSL/GZSL images and labels of a dataset with a ``seen`` column (NUS-WIDE built with
    ``label_space: all``; any dataset whose ``label_set.seen`` marks some labels unseen).

    Raises:
        ValueError: the label set has no unseen or no seen label.
    """
    seen_mask = label_set["seen"].to_numpy(dtype=bool)
    index = label_set["label_index"].to_numpy(dtype=np.int64)
    if seen_mask.all() or not seen_mask.any():
        raise ValueError(
            "supervision gt_seen needs both seen and unseen labels in label_set.seen "
            f"({int(seen_mask.sum())} of {len(seen_mask)} seen); build NUS-WIDE with label_space: all"
        )
    seen, unseen = np.sort(index[seen_mask]), np.sort(index[~seen_mask])
    split = manifest.set_index("image_id")["split"]
    lab_split = split.reindex(labels["image_id"].to_numpy()).to_numpy()
    is_seen = np.isin(labels["label_index"].to_numpy(), seen)
    ids = labels["image_id"].to_numpy(dtype=np.int64)
    return ZslSplit(
        train_ids=np.unique(ids[(lab_split == "train") & is_seen]),
        seen=seen,
        unseen=unseen,
        zsl_test_ids=np.unique(ids[(lab_split == "test") & ~is_seen]),
        gzsl_test_ids=np.unique(ids[lab_split == "test"]),
    )


def gt_targets(
    labels: pd.DataFrame, image_ids: np.ndarray, label_indices: np.ndarray, n_labels: int
) -> np.ndarray:
    """``(n, len(label_indices))`` float32 hard targets of ``image_ids`` over the chosen label columns
    (e.g. :attr:`ZslSplit.seen`); ``n_labels`` is the size of the whole label set."""
    y, _, _ = label_matrix(labels, image_ids, n_labels)
    return y[:, np.asarray(label_indices, dtype=np.int64)].astype(np.float32)


def evaluate_zsl(
    image_ids: np.ndarray,
    scores: np.ndarray,
    labels: pd.DataFrame,
    label_set: pd.DataFrame,
    setting: str,
    params: EvalParams | None = None,
    thresholded: bool = True,
    **keys: str,
) -> pd.DataFrame:
    """One metrics row (:data:`~s3a.multilabel.metrics.EVAL_COLUMNS`) of the ZSL or GZSL protocol.

    Args:
        image_ids: ``(N,)`` test images (any superset of the protocol's; filtered here).
        scores: ``(N, n_unseen)`` scores over the unseen labels in label order (``zsl``: a softmax
            baseline must be normalised over the unseen labels only), or ``(N, C)`` over all labels
            (``gzsl``; for ``zsl`` the unseen columns are taken from it).
        setting: ``zsl`` (images with an unseen label; subset ``unseen``) or ``gzsl`` (images with
            any label; subset ``gzsl``).
        thresholded: False for softmax scores (CP..OF1 left NaN).
        keys: ``dataset, model, stage, split`` copied into the row.
    """
    params = params or EvalParams()
    if setting not in ZSL_SETTINGS:
        raise ValueError(f"setting must be one of {ZSL_SETTINGS}, got {setting!r}")
    image_ids = np.asarray(image_ids, dtype=np.int64)
    c = len(label_set)
    unseen = np.sort(label_set["label_index"].to_numpy()[~label_set["seen"].to_numpy(dtype=bool)])
    y, difficult, _ = label_matrix(labels, image_ids, c)
    if setting == "zsl":
        if scores.shape[1] == c:
            scores = scores[:, unseen]
        elif scores.shape[1] != len(unseen):
            raise ValueError(
                f"zsl scores must have {len(unseen)} (unseen) or {c} columns, got {scores.shape}"
            )
        y, difficult = y[:, unseen], difficult[:, unseen]
    elif scores.shape[1] != c:
        raise ValueError(f"gzsl scores must have {c} columns, got {scores.shape}")
    # zsl: y and scores already hold the unseen columns only, every one of them unseen
    seen = np.zeros(y.shape[1], bool) if setting == "zsl" else None
    subset = "unseen" if setting == "zsl" else "gzsl"
    rows = evaluate(y, scores, difficult, None, seen, (subset,), params, thresholded, **keys)
    return pd.DataFrame(rows, columns=list(EVAL_COLUMNS))
