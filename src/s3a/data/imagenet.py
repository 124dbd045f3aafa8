"""ImageNet-family builders: ImageNet-1K, ImageNet-100 and Stanford Dogs.

On-disk layout of an ImageNet root (ILSVRC2012, validation images arranged into class folders, as
``torchvision.datasets.ImageFolder`` expects)::

    <root>/train/<wnid>/*.JPEG      e.g. <root>/train/n01440764/n01440764_10026.JPEG
    <root>/val/<wnid>/*.JPEG        e.g. <root>/val/n01440764/ILSVRC2012_val_00000293.JPEG

``train`` becomes the ``train`` split and ``val`` the ``test`` split. Class names are the WordNet head
lemmas of the wnids from :func:`s3a.vocab.wnid_names` (``gordon_setter``); ``class_index`` is the rank
of the wnid among the dataset's sorted wnids.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .base import (
    WNID_RE,
    DatasetError,
    abspath,
    is_image,
    list_images,
    list_subdirs,
    lookup_wnid_names,
    make_manifest,
    require_dir,
    require_file,
)

__all__ = [
    "IMAGENET_LAYOUT",
    "IMAGENET100_SEED",
    "imagenet100_wnids",
    "imagenet_train_wnids",
    "imagenet_subset",
    "build_imagenet1k",
    "build_imagenet100",
    "build_stanford_dogs",
]

log = logging.getLogger(__name__)

IMAGENET_LAYOUT = (
    "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG "
    "(download ILSVRC2012 from image-net.org and arrange val into wnid folders)"
)
IMAGENET100_SEED = 0
IMAGENET100_SIZE = 100


def _first(items: Sequence[str], n: int = 5) -> str:
    head = ", ".join(items[:n])
    return head + (", ..." if len(items) > n else "")


def imagenet_train_wnids(root: str | os.PathLike[str], dataset: str = "ImageNet-1K") -> list[str]:
    """Sorted wnid folder names of ``<root>/train`` (checking that ``train`` and ``val`` exist)."""
    base = abspath(root)
    train = require_dir(base / "train", dataset, IMAGENET_LAYOUT)
    val = require_dir(base / "val", dataset, IMAGENET_LAYOUT)
    wnids = [d for d in list_subdirs(train) if WNID_RE.fullmatch(d)]
    if not wnids:
        raise DatasetError(f"{dataset}: no wnid folders (n########) in {train}; expected {IMAGENET_LAYOUT}")
    if not any(WNID_RE.fullmatch(d) for d in list_subdirs(val)):
        with os.scandir(val) as it:
            flat = any(is_image(e.name) for e in it)
        if flat:
            raise DatasetError(
                f"{dataset}: the images in {val} are not arranged into wnid folders; expected "
                f"{IMAGENET_LAYOUT}"
            )
    return wnids


def imagenet_subset(
    root: str | os.PathLike[str],
    wnids: Sequence[str],
    dataset: str,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Manifest of the ImageNet images of ``wnids`` (train -> ``train``, val -> ``test``).

    Args:
        root: ImageNet root (see the module docstring for the layout).
        wnids: the classes to keep; each needs a non-empty ``<root>/train/<wnid>`` folder.
        dataset: name used in messages.
        names: class names aligned with ``wnids``; default :func:`s3a.vocab.wnid_names`.

    Raises:
        DatasetError: a wnid has no training images (the message gives how many and the first few).
    """
    base = abspath(root)
    train, val = base / "train", base / "val"
    wnids = sorted(wnids)
    missing = [w for w in wnids if not (train / w).is_dir()]
    if missing:
        raise DatasetError(
            f"{dataset}: {len(missing)} of {len(wnids)} classes have no folder under {train} "
            f"(first: {_first(missing)}); expected {IMAGENET_LAYOUT}"
        )
    rows: list[tuple[str, str, str]] = []
    empty: list[str] = []
    no_val: list[str] = []
    for wnid in tqdm(wnids, desc=f"{dataset}: listing", unit="class", leave=False):
        files = list_images(train / wnid)
        if not files:
            empty.append(wnid)
        rows.extend((p, "train", wnid) for p in files)
        if (val / wnid).is_dir():
            vfiles = list_images(val / wnid)
            rows.extend((p, "test", wnid) for p in vfiles)
        else:
            vfiles = []
        if not vfiles:
            no_val.append(wnid)
    if empty:
        raise DatasetError(
            f"{dataset}: {len(empty)} of {len(wnids)} class folders under {train} hold no images "
            f"(first: {_first(empty)}); expected {IMAGENET_LAYOUT}"
        )
    if no_val:
        log.warning(
            "%s: %d of %d classes have no images under %s (first: %s); the test split lacks them",
            dataset,
            len(no_val),
            len(wnids),
            val,
            _first(no_val),
        )
    if names is None:
        names = lookup_wnid_names(wnids)
    classes = {w: (n, w) for w, n in zip(wnids, names, strict=True)}
    return make_manifest(rows, classes, dataset)


def build_imagenet1k(root: str) -> pd.DataFrame:
    """ImageNet-1K (ILSVRC2012): every wnid folder of ``<root>/train``.

    Layout::

        <root>/train/<wnid>/*.JPEG   -> split "train"
        <root>/val/<wnid>/*.JPEG     -> split "test"

    The manifest keeps the 1000 wnid classes, but three names each cover two wnids (``crane``: bird
    and machine; ``cardigan``: corgi and sweater; ``maillot``: tights and swimsuit), so there are 997
    named classes: the metrics score names (:func:`s3a.metrics.named_classes`) and discovery uses
    ``k: 997``, as the official evaluation does.

    Args:
        root: the ImageNet root folder.
    """
    dataset = "ImageNet-1K"
    wnids = imagenet_train_wnids(root, dataset)
    known = set(wnids)
    extra = [w for w in list_subdirs(abspath(root) / "val") if WNID_RE.fullmatch(w) and w not in known]
    if extra:
        raise DatasetError(
            f"{dataset}: {len(extra)} val classes have no train folder (first: {_first(extra)}); "
            f"expected {IMAGENET_LAYOUT}"
        )
    if len(wnids) != 1000:
        log.warning("%s: %d classes under %s/train (ImageNet-1K has 1000)", dataset, len(wnids), root)
    return imagenet_subset(root, wnids, dataset)


def imagenet100_wnids(all_wnids: Sequence[str]) -> list[str]:
    """The ImageNet-100 classes: the seed-0 draw of 100 of the 1,000 sorted ImageNet-1K wnids.

    Same draw as ``np.random.seed(0); np.random.choice(range(1000), 100, replace=False)`` on the
    ImageFolder class indices (first indices 993, 859, 298, 553, 672, ...). Returned sorted.
    """
    ordered = sorted(all_wnids)
    if len(ordered) != 1000:
        raise DatasetError(
            f"ImageNet-100: the class draw needs the 1000 ImageNet-1K wnids, got {len(ordered)}"
        )
    idx = np.random.RandomState(IMAGENET100_SEED).choice(range(1000), IMAGENET100_SIZE, replace=False)
    return sorted(ordered[i] for i in idx)


def build_imagenet100(root: str) -> pd.DataFrame:
    """ImageNet-100: 100 ImageNet-1K classes drawn with seed 0 (see :func:`imagenet100_wnids`).

    Layout: the full ImageNet-1K tree (the draw indexes the 1,000 sorted wnid folders of ``train``)::

        <root>/train/<wnid>/*.JPEG   (all 1000 wnids) -> split "train" for the 100 drawn ones
        <root>/val/<wnid>/*.JPEG                     -> split "test"

    Args:
        root: the ImageNet root folder.
    """
    dataset = "ImageNet-100"
    wnids = imagenet_train_wnids(root, dataset)
    if len(wnids) != 1000:
        raise DatasetError(
            f"{dataset}: found {len(wnids)} wnid folders in {abspath(root) / 'train'}; the seed-0 class draw "
            f"needs the full ImageNet-1K train tree of 1000 classes; expected {IMAGENET_LAYOUT}"
        )
    return imagenet_subset(root, imagenet100_wnids(wnids), dataset)


# --------------------------------------------------------------------------------------- Stanford Dogs

DOGS_LAYOUT = (
    "<root>/Images/<wnid>-<Name>/*.jpg, <root>/lists/train_list.mat and <root>/lists/test_list.mat "
    "(download images.tar and lists.tar from http://vision.stanford.edu/aditya86/ImageNetDogs/ and "
    "extract both into <root>)"
)


def _mat_strings(cell: np.ndarray) -> list[str]:
    """Flatten a MATLAB cell array of strings (as read by ``scipy.io.loadmat``) to Python strings."""
    out = []
    for item in np.asarray(cell, dtype=object).ravel():
        value = item
        while isinstance(value, np.ndarray):
            value = value.ravel()[0] if value.size else ""
        out.append(str(value))
    return out


def _read_dogs_list(path: Path, dataset: str) -> tuple[list[str], np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises several types for a damaged file
        raise DatasetError(f"{dataset}: cannot read {path} ({exc}); expected {DOGS_LAYOUT}") from exc
    if "file_list" not in mat or "labels" not in mat:
        raise DatasetError(
            f"{dataset}: {path} lacks the 'file_list'/'labels' variables; expected {DOGS_LAYOUT}"
        )
    files = _mat_strings(mat["file_list"])
    labels = np.asarray(mat["labels"]).astype(np.int64).ravel()
    if len(files) != len(labels):
        raise DatasetError(f"{dataset}: {path} has {len(files)} files but {len(labels)} labels")
    return files, labels


def build_stanford_dogs(root: str) -> pd.DataFrame:
    """Stanford Dogs: 120 ImageNet dog breeds, official 12,000 / 8,580 train/test lists.

    Layout::

        <root>/Images/<wnid>-<Name>/*.jpg     e.g. Images/n02085620-Chihuahua/n02085620_5927.jpg
        <root>/lists/train_list.mat           MATLAB file: file_list (relative paths), labels (1-based)
        <root>/lists/test_list.mat

    The class of an image is the wnid prefix of its folder; ``class_name`` is the vocabulary name of
    that wnid (:func:`s3a.vocab.wnid_names`) and ``class_index`` its rank among the sorted wnids.

    Args:
        root: the Stanford Dogs root folder.
    """
    dataset = "StanfordDogs"
    base = abspath(root)
    images = require_dir(base / "Images", dataset, DOGS_LAYOUT)
    rows: list[tuple[str, str, str]] = []
    label_wnid: dict[int, str] = {}
    missing: list[str] = []
    for split, name in (("train", "train_list.mat"), ("test", "test_list.mat")):
        files, labels = _read_dogs_list(require_file(base / "lists" / name, dataset, DOGS_LAYOUT), dataset)
        for rel, label in zip(files, labels, strict=True):
            folder = rel.replace("\\", "/").split("/")[0]
            wnid = folder.split("-", 1)[0]
            if not WNID_RE.fullmatch(wnid):
                raise DatasetError(
                    f"{dataset}: {name} lists {rel!r}, whose folder does not start with a wnid"
                )
            if label_wnid.setdefault(int(label), wnid) != wnid:
                raise DatasetError(
                    f"{dataset}: label {label} maps to both {label_wnid[int(label)]} and {wnid}"
                )
            path = images / rel
            if not is_image(path.name):
                continue
            if not path.is_file():
                missing.append(str(path))
            rows.append((str(path), split, wnid))
    if missing:
        raise DatasetError(
            f"{dataset}: {len(missing)} listed images are missing (first: {_first(missing, 3)}); "
            f"expected {DOGS_LAYOUT}"
        )
    wnids = sorted(set(label_wnid.values()))
    names = lookup_wnid_names(wnids)
    classes = {w: (n, w) for w, n in zip(wnids, names, strict=True)}
    return make_manifest(rows, classes, dataset)
