"""Multi-label tables: the types, the label tables' columns and the functions every builder shares
(see :mod:`s3a.multilabel.data.registry` for the table grammar)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from s3a.data.base import MANIFEST_COLUMNS, DatasetError
from s3a.io import embeddings_table

log = logging.getLogger(__name__)

LABELS_COLUMNS = ("image_id", "label_index", "difficult", "area_fraction", "max_instance_area")
LABEL_SET_COLUMNS = ("label_index", "name", "prompt", "wnid", "vocab_index", "seen", "n_train", "n_test")

#: the 20 PASCAL VOC classes, sorted (the label order of both VOC kinds)
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
_READABLE = {
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "tvmonitor": "tv monitor",
    "aeroplane": "airplane",
    "motorbike": "motorbike",
}
DIFFICULT_MODES = ("ignore", "positive", "negative")

#: mosaic layouts on a 2x2 grid of cells: regions ``(x0, y0, x1, y1)`` in cell units, filled in order
LAYOUTS: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    "full": ((0, 0, 2, 2),),
    "halves_v": ((0, 0, 1, 2), (1, 0, 2, 2)),
    "halves_h": ((0, 0, 2, 1), (0, 1, 2, 2)),
    "half_two": ((0, 0, 1, 2), (1, 0, 2, 1), (1, 1, 2, 2)),
    "quad": ((0, 0, 1, 1), (1, 0, 2, 1), (0, 1, 1, 2), (1, 1, 2, 2)),
}
#: default probabilities of the layouts, in :data:`LAYOUTS` order (2.8 labels per image on average)
LAYOUT_PROBS: tuple[float, ...] = (0.10, 0.15, 0.15, 0.30, 0.30)
MOSAIC_JPEG_QUALITY = 90


@dataclass
class MultiLabelData:
    """The three tables of a multi-label dataset (see the module docstring)."""

    manifest: pd.DataFrame
    labels: pd.DataFrame
    label_set: pd.DataFrame


@dataclass(frozen=True)
class ImageRecord:
    """One image before assembly.

    Attributes:
        path: absolute image path.
        split: ``train`` or ``test``.
        objects: ``(label_index, difficult, area_px)`` per annotated instance (``area_px`` NaN
            when the dataset has no boxes).
        image_area: ``width * height`` in px² (NaN when unknown).
    """

    path: str
    split: str
    objects: tuple[tuple[int, bool, float], ...]
    image_area: float = math.nan


def readable_prompt(name: str, style: str = "readable") -> str:
    """The text put into the templates for a label: ``readable`` (``diningtable`` -> ``dining table``,
    underscores to spaces) or ``raw`` (the name as is, as the CDUL reproduction uses it)."""
    if style == "raw":
        return name
    if style != "readable":
        raise ValueError(f"prompt_style must be 'readable' or 'raw', got {style!r}")
    return _READABLE.get(name, name.replace("_", " "))


def assemble(
    dataset: str,
    records: Sequence[ImageRecord],
    names: Sequence[str],
    wnids: Sequence[str | None] | None = None,
    seen: Sequence[bool] | None = None,
    prompt_style: str = "readable",
) -> MultiLabelData:
    """Build the three tables from per-image records.

    Images are ordered by (split: train then test, path); ``image_id`` is ``0..N-1`` in that order.
    Per (image, label): ``difficult`` = all its instances difficult, ``area_fraction`` = summed
    instance area / image area (capped at 1; NaN without areas), ``max_instance_area`` = the
    largest instance. The dominant label (manifest ``class_index``) has the largest summed area;
    ties go to the first label in annotation order; ``-1`` when no area is known.
    """
    if not records:
        raise DatasetError(f"{dataset}: no images found")
    c = len(names)
    wnids = list(wnids) if wnids is not None else [None] * c
    seen = list(seen) if seen is not None else [True] * c
    order = sorted(range(len(records)), key=lambda i: (records[i].split != "train", records[i].path))
    bad = sorted({r.split for r in records} - {"train", "test"})
    if bad:
        raise ValueError(f"{dataset}: unknown split(s) {bad}")
    man_rows, lab_rows = [], []
    for image_id, i in enumerate(order):
        rec = records[i]
        per: dict[int, list[float]] = {}  # label -> [all difficult, summed area, max area]
        for label, difficult, area in rec.objects:
            if not 0 <= label < c:
                raise ValueError(f"{dataset}: label index {label} of {rec.path} outside 0..{c - 1}")
            entry = per.setdefault(int(label), [True, 0.0, -math.inf])
            entry[0] = entry[0] and bool(difficult)
            entry[1] += float(area) if not math.isnan(area) else 0.0
            entry[2] = max(entry[2], float(area)) if not math.isnan(area) else entry[2]
        dominant = -1
        best = 0.0
        for label, (_, total, _) in per.items():
            if total > best:
                dominant, best = label, total
        man_rows.append((image_id, rec.path, rec.split, dominant))
        for label, (difficult, total, biggest) in per.items():
            has_area = biggest != -math.inf
            frac = min(1.0, total / rec.image_area) if has_area and rec.image_area > 0 else math.nan
            lab_rows.append((image_id, label, difficult, frac, biggest if has_area else math.nan))
    man = pd.DataFrame(man_rows, columns=["image_id", "path", "split", "class_index"])
    man["image_id"] = man["image_id"].astype(np.int64)
    man["class_index"] = man["class_index"].astype(np.int64)
    name_arr = np.array(list(names) + [None], dtype=object)
    wnid_arr = np.array(wnids + [None], dtype=object)
    man["class_name"] = name_arr[man["class_index"].to_numpy()]  # -1 -> None (the appended entry)
    man["wnid"] = wnid_arr[man["class_index"].to_numpy()]
    labels = pd.DataFrame(lab_rows, columns=list(LABELS_COLUMNS))
    labels = labels.astype(
        {
            "image_id": np.int64,
            "label_index": np.int32,
            "difficult": bool,
            "area_fraction": np.float32,
            "max_instance_area": np.float32,
        }
    )
    labels = labels.sort_values(["image_id", "label_index"], kind="stable").reset_index(drop=True)
    split_of = man["split"].to_numpy()[labels["image_id"].to_numpy()]
    n_train = np.bincount(labels["label_index"].to_numpy()[split_of == "train"], minlength=c)
    n_test = np.bincount(labels["label_index"].to_numpy()[split_of == "test"], minlength=c)
    label_set = pd.DataFrame(
        {
            "label_index": np.arange(c, dtype=np.int32),
            "name": pd.Series(list(names), dtype=object),
            "prompt": pd.Series([readable_prompt(n, prompt_style) for n in names], dtype=object),
            "wnid": pd.Series(wnids, dtype=object),
            "vocab_index": np.full(c, -1, dtype=np.int64),
            "seen": np.asarray(seen, dtype=bool),
            "n_train": n_train.astype(np.int64),
            "n_test": n_test.astype(np.int64),
        }
    )
    counts = man["split"].value_counts()
    log.info(
        "%s: %d images (%d train, %d test), %d labels, %d positives",
        dataset,
        len(man),
        int(counts.get("train", 0)),
        int(counts.get("test", 0)),
        c,
        len(labels),
    )
    return MultiLabelData(man[list(MANIFEST_COLUMNS)], labels, label_set)


def attach_vocab_index(label_set: pd.DataFrame, vocabulary: pd.DataFrame) -> pd.DataFrame:
    """Fill ``vocab_index`` from a vocabulary table (``vocab_index, name, synset_ids``): by wnid when
    the label has one, else by the vocabulary name equal to the label's name (spaces as
    underscores, lower case); ``-1`` when neither matches. Returns a new table."""
    from s3a.vocab import name_to_index, wnid_to_index

    by_wnid = wnid_to_index(vocabulary)
    by_name = name_to_index(vocabulary)
    out = label_set.copy()
    found = []
    for name, wnid in zip(out["name"], out["wnid"], strict=True):
        key = str(name).strip().lower().replace(" ", "_")
        found.append(by_wnid.get(str(wnid), by_name.get(key, -1)) if wnid else by_name.get(key, -1))
    out["vocab_index"] = np.asarray(found, dtype=np.int64)
    return out


def label_matrix(
    labels: pd.DataFrame, image_ids: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense targets for the images ``image_ids`` (an evaluation chunk, not the whole dataset).

    Returns:
        ``(y, difficult, small_area)``: ``(n, C)`` bool positives, ``(n, C)`` bool difficult-only
        positives, ``(n, C)`` float32 largest instance area (NaN where absent). Memory ``n * C``:
        callers pass a chunk (COCO val 40k x 80 = 3.2M cells is fine; NUS 1,006 labels too).
    """
    image_ids = np.asarray(image_ids, dtype=np.int64)
    pos = pd.Index(image_ids).get_indexer(labels["image_id"].to_numpy())
    keep = pos >= 0
    rows = pos[keep]
    cols = labels["label_index"].to_numpy()[keep]
    y = np.zeros((len(image_ids), n_labels), dtype=bool)
    diff = np.zeros_like(y)
    area = np.full((len(image_ids), n_labels), np.nan, dtype=np.float32)
    y[rows, cols] = True
    diff[rows, cols] = labels["difficult"].to_numpy()[keep]
    area[rows, cols] = labels["max_instance_area"].to_numpy()[keep]
    return y, diff, area


# --------------------------------------------------------------------------------------------- VOC


def predictions_table(image_ids: np.ndarray, scores: np.ndarray) -> pa.Table:
    """A learner's predictions (``ml/{learner}/{split}``): ``image_id int64, scores
    fixed_size_list<float64>[C]`` (probabilities; float64 because a float32 sigmoid rounds every
    logit above ~16.6 to 1.0 and ties them, as :mod:`s3a.multilabel.aggregate` explains for softmax)."""
    a = np.ascontiguousarray(scores, dtype=np.float64)
    if a.ndim != 2 or len(image_ids) != a.shape[0]:
        raise ValueError(f"expected ids (N,) and scores (N, C); got {np.shape(image_ids)} and {a.shape}")
    column = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1), type=pa.float64()), a.shape[1])
    return pa.table({"image_id": pa.array(np.asarray(image_ids, dtype=np.int64)), "scores": column})


def list_matrix(table: pa.Table, column: str) -> np.ndarray:
    """A ``fixed_size_list`` column as an ``(N, C)`` array (one copy).

    Raises:
        ValueError: the table has no such column (its columns named).
    """
    if column not in table.column_names:
        raise ValueError(f"the table has no {column!r} column (columns {table.column_names})")
    arr = table.column(column).combine_chunks()
    return arr.values.to_numpy(zero_copy_only=False).reshape(len(arr), arr.type.list_size)


def read_predictions(path) -> tuple[np.ndarray, np.ndarray]:
    """``(image_ids (N,) int64, scores (N, C) float64)`` of a :func:`predictions_table` file."""
    table = pq.read_table(path, columns=["image_id", "scores"])
    scores = list_matrix(table, "scores").astype(np.float64, copy=False)
    return table.column("image_id").to_numpy().astype(np.int64), scores


def check_split(manifest: pd.DataFrame, image_ids: np.ndarray, split: str, what: str) -> None:
    """Raise unless every id of ``image_ids`` is a ``split`` image of ``manifest``; log how many of
    the split's images ``what`` lacks (images skipped as unreadable upstream)."""
    in_split = manifest.loc[manifest["split"] == split, "image_id"].to_numpy(dtype=np.int64)
    outside = np.setdiff1d(np.asarray(image_ids, dtype=np.int64), in_split)
    if len(outside):
        raise ValueError(
            f"{what}: {len(outside)} image ids are not {split!r} images of the manifest, "
            f"e.g. {outside[:5].tolist()}"
        )
    missing = len(in_split) - len(np.unique(image_ids))
    if missing:
        log.warning(
            "%s: %d of the %d %s images have no row (unreadable)", what, missing, len(in_split), split
        )


def labels_table(image_ids: np.ndarray, y: np.ndarray) -> pa.Table:
    """``labels_refined`` of a learner: ``image_id int64, y fixed_size_list<float32>[C]``."""
    return embeddings_table(image_ids, y).rename_columns(["image_id", "y"])
