"""The dataset registry (kind -> builder) and :func:`build_manifest`, the one entry point."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .base import MANIFEST_COLUMNS, SPLITS, DatasetError
from .breeds import build_entity13, build_entity30, build_living17, build_nonliving26
from .folders import build_caltech101, build_folder, build_imagefolder
from .generated import build_generated
from .imagenet import build_imagenet1k, build_imagenet100, build_stanford_dogs
from .torchvision_sets import build_cifar100, build_oxford_pet

__all__ = ["DATASETS", "UNLABELED_KINDS", "build_manifest", "validate_manifest", "builder_params"]

log = logging.getLogger(__name__)

Builder = Callable[..., pd.DataFrame]

#: dataset kind -> builder ``(**params) -> manifest``; the builder docstrings give layouts and params
DATASETS: dict[str, Builder] = {
    "imagenet1k": build_imagenet1k,
    "imagenet100": build_imagenet100,
    "living17": build_living17,
    "nonliving26": build_nonliving26,
    "entity13": build_entity13,
    "entity30": build_entity30,
    "stanford_dogs": build_stanford_dogs,
    "caltech101": build_caltech101,
    "cifar100": build_cifar100,
    "oxford_pet": build_oxford_pet,
    "imagefolder": build_imagefolder,
    "generated": build_generated,
    "folder": build_folder,
}

#: kinds without ground truth: the workflow names their images and evaluates nothing
UNLABELED_KINDS: frozenset[str] = frozenset({"folder"})


def builder_params(kind: str) -> dict[str, Any]:
    """The parameters of a kind's builder: ``name -> default`` (``inspect.Parameter.empty`` if required)."""
    sig = inspect.signature(DATASETS[kind])
    return {name: p.default for name, p in sig.parameters.items()}


def validate_manifest(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Check a builder's output against the manifest schema; returns it unchanged.

    Raises:
        ValueError: a schema violation (a bug in a builder, not a user error).
    """
    problems: list[str] = []
    if tuple(frame.columns) != MANIFEST_COLUMNS:
        problems.append(f"columns {tuple(frame.columns)} != {MANIFEST_COLUMNS}")
    else:
        if frame["image_id"].dtype != np.int64 or not np.array_equal(
            frame["image_id"], np.arange(len(frame))
        ):
            problems.append("image_id is not int64 0..N-1")
        if frame["class_index"].dtype != np.int64 or (frame["class_index"] < 0).any():
            problems.append("class_index is not a non-negative int64")
        bad_splits = set(frame["split"]) - set(SPLITS)
        if bad_splits:
            problems.append(f"unknown splits {sorted(bad_splits)}")
        if not all(isinstance(p, str) and os.path.isabs(p) for p in frame["path"]):
            problems.append("path holds non-absolute or non-string values")
        if not all(isinstance(n, str) and n for n in frame["class_name"]):
            problems.append("class_name holds empty or non-string values")
        if not all(w is None or isinstance(w, str) for w in frame["wnid"]):
            problems.append("wnid holds values that are neither str nor None")
        if frame.groupby("class_index")["class_name"].nunique().max() > 1:
            problems.append("a class_index has several class names")
        if frame["path"].duplicated().any():
            problems.append("duplicate paths")
    if problems:
        raise ValueError(f"manifest of {kind!r} breaks the schema: " + "; ".join(problems))
    return frame


def build_manifest(kind: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Build the image manifest of a dataset.

    Args:
        kind: a key of :data:`DATASETS`.
        params: keyword arguments of that builder (see its docstring), e.g. ``{"root": "/data/imagenet"}``.

    Returns:
        DataFrame with exactly :data:`MANIFEST_COLUMNS`, one row per image, sorted by (split: train
        then test, class_index, path), ``image_id`` ``0..N-1``.

    Raises:
        DatasetError: unknown kind, unknown or missing parameter, or a dataset problem on disk.
    """
    if kind not in DATASETS:
        raise DatasetError(f"unknown dataset kind {kind!r}; known kinds: {', '.join(sorted(DATASETS))}")
    params = dict(params or {})
    accepted = builder_params(kind)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise DatasetError(
            f"{kind}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    missing = [n for n, d in accepted.items() if d is inspect.Parameter.empty and n not in params]
    if missing:
        raise DatasetError(
            f"{kind}: missing required parameter(s) {', '.join(missing)}; accepted: {', '.join(accepted)}"
        )
    log.info("building the %s manifest with %s", kind, params)
    manifest = validate_manifest(DATASETS[kind](**params), kind)
    if kind not in UNLABELED_KINDS:
        for split in sorted(set(SPLITS) - set(manifest["split"])):
            log.warning("%s: the %s split is empty (no images); its results will be empty", kind, split)
    return manifest
