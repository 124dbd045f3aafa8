"""Shared pieces of the dataset builders: the manifest schema, the error type and small helpers.

A *manifest* is one row per image with the columns of :data:`MANIFEST_COLUMNS`:

=============  ========  ==========================================================================
column         dtype     meaning
=============  ========  ==========================================================================
image_id       int64     ``0..N-1`` in the order (split: train then test, class_index, path)
path           str       absolute path of the image file
split          str       ``"train"`` or ``"test"``
class_index    int64     index of the class in the sorted list of the dataset's classes
class_name     str       human class name (vocabulary style for WordNet datasets, e.g. ``gordon_setter``)
wnid           str/None  WordNet id of the class (``n01440764``) or ``None``
=============  ========  ==========================================================================

Classes are identified by a *key*: the wnid for WordNet datasets, the class name otherwise;
``class_index`` is the rank of the key in the sorted list of all keys of the dataset.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from s3a.logs import UserError

__all__ = [
    "MANIFEST_COLUMNS",
    "SPLITS",
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "ClassInfo",
    "abspath",
    "is_image",
    "list_images",
    "list_subdirs",
    "require_dir",
    "require_file",
    "make_manifest",
    "seeded_split",
    "lookup_wnid_names",
    "WNID_RE",
]

log = logging.getLogger(__name__)

MANIFEST_COLUMNS: tuple[str, ...] = ("image_id", "path", "split", "class_index", "class_name", "wnid")
SPLITS: tuple[str, ...] = ("train", "test")
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
WNID_RE = re.compile(r"n\d{8}")

#: class key -> (class_name, wnid)
ClassInfo = Mapping[str, tuple[str, "str | None"]]


class DatasetError(UserError):
    """A problem with a dataset the user can fix: a missing root or file, an incomplete tree, a bad value.

    The message names the dataset, the path that was expected and how to obtain it.
    """


def abspath(path: str | os.PathLike[str]) -> Path:
    """Absolute, normalised path (``~`` expanded, ``..`` removed) without resolving symlinks."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def is_image(name: str) -> bool:
    """Whether a file name has an image extension (case-insensitive) and is not hidden."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(folder: str | os.PathLike[str]) -> list[str]:
    """Sorted absolute paths of the image files directly inside ``folder`` (no recursion)."""
    with os.scandir(folder) as it:
        return sorted(e.path for e in it if is_image(e.name) and e.is_file())


def list_subdirs(folder: str | os.PathLike[str]) -> list[str]:
    """Sorted names of the (non-hidden) sub-folders of ``folder``."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())


def require_dir(path: Path, dataset: str, expected: str) -> Path:
    """Return ``path`` if it is a folder, else raise :class:`DatasetError` naming it and the layout."""
    if not path.is_dir():
        raise DatasetError(f"{dataset}: no folder {path}; expected {expected}")
    return path


def require_file(path: Path, dataset: str, expected: str) -> Path:
    """Return ``path`` if it is a file, else raise :class:`DatasetError` naming it and the layout."""
    if not path.is_file():
        raise DatasetError(f"{dataset}: no file {path}; expected {expected}")
    return path


def make_manifest(
    rows: Iterable[tuple[str, str, str]],
    classes: ClassInfo,
    dataset: str,
    where: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Assemble a manifest from ``(path, split, class_key)`` rows and the class table.

    Args:
        rows: one ``(absolute path, split, class key)`` per image.
        classes: every class of the dataset, ``key -> (class_name, wnid)``; ``class_index`` is the
            rank of the key in ``sorted(classes)`` (so a class without images still takes its index).
        dataset: name used in error messages.
        where: the folder searched, named in the error raised when there are no images.

    Returns:
        DataFrame with :data:`MANIFEST_COLUMNS`, sorted by (split, class_index, path), ``image_id``
        ``0..N-1``.
    """
    keys = sorted(classes)
    index_of = {k: i for i, k in enumerate(keys)}
    paths: list[str] = []
    splits: list[str] = []
    cls: list[int] = []
    for path, split, key in rows:
        if key not in index_of:
            raise ValueError(f"{dataset}: class {key!r} of {path} is not in the class table")
        paths.append(path)
        splits.append(split)
        cls.append(index_of[key])
    if not paths:
        place = f" in {where}" if where is not None else ""
        raise DatasetError(
            f"{dataset}: no images found{place} (image extensions: {sorted(IMAGE_EXTENSIONS)})"
        )
    split_rank = {s: i for i, s in enumerate(SPLITS)}
    frame = pd.DataFrame(
        {
            "path": pd.Series(paths, dtype=object),
            "split": pd.Series(splits, dtype=object),
            "class_index": np.asarray(cls, dtype=np.int64),
        }
    )
    frame["_rank"] = frame["split"].map(split_rank)
    if frame["_rank"].isna().any():
        bad = sorted(set(frame.loc[frame["_rank"].isna(), "split"]))
        raise ValueError(f"{dataset}: unknown split(s) {bad}; expected {SPLITS}")
    frame = frame.sort_values(["_rank", "class_index", "path"], kind="stable").drop(columns="_rank")
    frame = frame.reset_index(drop=True)
    names = np.array([classes[k][0] for k in keys], dtype=object)
    wnids = np.array([classes[k][1] for k in keys], dtype=object)
    take = frame["class_index"].to_numpy()
    frame["class_name"] = pd.Series(names[take], dtype=object)
    frame["wnid"] = pd.Series(wnids[take], dtype=object)
    frame.insert(0, "image_id", np.arange(len(frame), dtype=np.int64))
    counts = frame["split"].value_counts()
    log.info(
        "%s: %d images (%d train, %d test) in %d classes",
        dataset,
        len(frame),
        int(counts.get("train", 0)),
        int(counts.get("test", 0)),
        len(keys),
    )
    return frame[list(MANIFEST_COLUMNS)]


def seeded_split(n: int, test_fraction: float, seed: int) -> np.ndarray:
    """Per-class train/test assignment of ``n`` files (given in sorted order).

    Rule: ``perm = np.random.RandomState(seed).permutation(n)`` (a fresh generator per class);
    ``n_test = floor(n * test_fraction + 0.5)`` capped at ``n - 1`` (a class keeps at least one
    training image); the files at positions ``perm[:n - n_test]`` are train, the rest test.
    For example 10 files with ``test_fraction=0.2`` give 8 train and 2 test.

    Returns:
        shape ``(n,)`` array of ``"train"`` / ``"test"`` aligned with the sorted files.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise DatasetError(f"test fraction must be in [0, 1), got {test_fraction}")
    out = np.full(n, "train", dtype=object)
    if n == 0 or test_fraction == 0.0:
        return out
    n_test = min(int(math.floor(n * test_fraction + 0.5 + 1e-9)), n - 1)
    perm = np.random.RandomState(seed).permutation(n)
    out[perm[n - n_test :]] = "test"
    return out


def lookup_wnid_names(wnids: Sequence[str]) -> list[str]:
    """Vocabulary names (WordNet head lemmas, e.g. ``gordon_setter``) of ``wnids`` via :mod:`s3a.vocab`."""
    from s3a.vocab import wnid_names  # local import: the vocabulary module is heavier than this one

    try:
        names = list(wnid_names(list(wnids)))
    except KeyError as exc:
        raise DatasetError(f"unknown WordNet id: {exc.args[0] if exc.args else exc}") from exc
    if len(names) != len(wnids):
        raise ValueError(f"s3a.vocab.wnid_names returned {len(names)} names for {len(wnids)} wnids")
    return names
