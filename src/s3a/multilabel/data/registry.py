"""Multi-label datasets: the standard manifest plus a long label table and a label-set table.

Every builder returns a :class:`MultiLabelData` of three tables (``MULTILABEL_SPEC.md`` section 2):

``manifest``   the standard manifest of :mod:`s3a.data.base` (so ``embed_images`` runs unchanged);
               ``class_index`` holds the *dominant* label (largest annotated area, first label on
               ties) or ``-1`` where the dataset has no areas (NUS-WIDE). ``split`` is ``train`` or
               ``test`` (VOC2007 trainval/test, VOC2012 train/val, COCO train2014/val2014, NUS
               train/val map to train/test in that order).
``labels``     one row per positive (image, label): ``image_id int64, label_index int32,
               difficult bool, area_fraction float32, max_instance_area float32`` (px²; NaN without
               boxes). ``difficult`` is True when *every* instance of the label in the image is
               marked difficult (VOC); the metrics mask such entries (``difficult: ignore``).
``label_set``  ``label_index int32, name str, prompt str, wnid str|None, vocab_index int64 (-1 =
               unknown / out of vocabulary), seen bool, n_train int64, n_test int64``.

Label order: VOC sorted names, COCO category-id order, NUS-WIDE sorted names, mosaic the order of
the sampled classes (sorted photo index), generated the shape order.

Cost at full scale: the COCO 2014 annotation files are read with :mod:`json` (train 2014: ~450 MB,
a few GB of Python objects while parsing, ~1 minute); the tables are linear in the number of
positives (COCO train: 82k images, ~240k rows). Nothing is images x labels.

This module is the front door (the registry and every public name); the shared types and table
helpers live in :mod:`s3a.multilabel.data.tables`, the benchmark builders in
:mod:`s3a.multilabel.data.benchmarks`,
the mosaic and generated sets in :mod:`s3a.multilabel.data.mosaic`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from s3a.data.base import DatasetError
from s3a.multilabel.data.benchmarks import build_coco2014, build_nuswide, build_voc
from s3a.multilabel.data.mosaic import build_generated_multilabel, build_mosaic, cover_resize
from s3a.multilabel.data.tables import (
    LABEL_SET_COLUMNS,
    LABELS_COLUMNS,
    LAYOUT_PROBS,
    LAYOUTS,
    VOC_CLASSES,
    ImageRecord,
    MultiLabelData,
    assemble,
    attach_vocab_index,
    label_matrix,
    readable_prompt,
)

__all__ = [
    "LABELS_COLUMNS",
    "LABEL_SET_COLUMNS",
    "VOC_CLASSES",
    "LAYOUTS",
    "LAYOUT_PROBS",
    "MultiLabelData",
    "ImageRecord",
    "assemble",
    "readable_prompt",
    "cover_resize",
    "build_voc",
    "build_coco2014",
    "build_nuswide",
    "build_mosaic",
    "build_generated_multilabel",
    "attach_vocab_index",
    "label_matrix",
    "BUILDERS",
    "build_multilabel",
    "builder_params",
]

#: kind -> builder (keyword parameters of the config's ``params``)
BUILDERS = {
    "voc2007": lambda **p: build_voc(year="2007", **p),
    "voc2012": lambda **p: build_voc(year="2012", **p),
    "coco2014": build_coco2014,
    "nuswide": build_nuswide,
    "mosaic": build_mosaic,
    "generated_multilabel": build_generated_multilabel,
}


def build_multilabel(kind: str, params: Mapping[str, object] | None = None) -> MultiLabelData:
    """Run the builder registered for ``kind`` with ``params``; an unknown kind or parameter raises
    :class:`DatasetError` naming it."""
    if kind not in BUILDERS:
        raise DatasetError(f"unknown multi-label dataset kind {kind!r}; available: {sorted(BUILDERS)}")
    try:
        return BUILDERS[kind](**dict(params or {}))
    except TypeError as exc:
        raise DatasetError(f"{kind}: bad parameters {dict(params or {})}: {exc}") from exc


def builder_params(kind: str) -> dict[str, Any]:
    """The ``params`` a kind's builder takes: ``name -> default`` (``inspect.Parameter.empty`` if
    required); VOC's ``year`` is fixed by the kind."""
    builder = {"voc2007": build_voc, "voc2012": build_voc}.get(kind, BUILDERS[kind])
    sig = inspect.signature(builder)
    return {name: p.default for name, p in sig.parameters.items() if name != "year"}
