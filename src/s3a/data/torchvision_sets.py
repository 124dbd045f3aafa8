"""Datasets distributed through torchvision: CIFAR-100 and Oxford-IIIT Pet (out-of-vocabulary sets).

torchvision is only used to *download* (``download=True``); the files are then read here, so a
dataset placed by hand under ``root`` works without a network and without checksum look-ups.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from s3a.io import atomic_path

from .base import DatasetError, abspath, make_manifest, require_dir, require_file

__all__ = ["build_cifar100", "build_oxford_pet", "CIFAR100_FOLDER", "CIFAR100_EXPORT", "PETS_FOLDER"]

log = logging.getLogger(__name__)

CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_EXPORT = "cifar100-images"
CIFAR100_FILES = {"train": "train", "test": "test"}
CIFAR100_LAYOUT = (
    f"<root>/{CIFAR100_FOLDER}/train, test and meta (the python version of CIFAR-100 from "
    "https://www.cs.toronto.edu/~kriz/cifar.html, extracted into <root>); set download: true to fetch it"
)


def _network_errors() -> tuple[type[BaseException], ...]:
    import urllib.error

    return (urllib.error.URLError, OSError, RuntimeError, ValueError)


def _torchvision_download(dataset: str, root: Path, factory, what: str) -> None:
    """Run a torchvision dataset constructor with ``download=True``, turning failures into DatasetError."""
    log.info("%s: downloading into %s with torchvision", dataset, root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        factory(str(root))
    except _network_errors() as exc:
        raise DatasetError(
            f"{dataset}: download into {root} failed ({type(exc).__name__}: {exc}); place {what} by hand"
        ) from exc


def _load_pickle(path: Path, dataset: str) -> dict:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DatasetError(f"{dataset}: cannot read {path} ({exc}); expected {CIFAR100_LAYOUT}") from exc


def _save_png_atomic(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def build_cifar100(root: str, download: bool = False) -> pd.DataFrame:
    """CIFAR-100 (50,000 train / 10,000 test, 100 classes), exported once as PNG files.

    Layout read::

        <root>/cifar-100-python/train   pickle: data (N, 3072) uint8 (R, G, B planes of 32x32), fine_labels
        <root>/cifar-100-python/test
        <root>/cifar-100-python/meta    pickle: fine_label_names (sorted, e.g. "aquarium_fish")

    Layout written (files already there are kept; each new file is written atomically)::

        <root>/cifar100-images/{train,test}/<class_name>/<index:05d>.png

    ``index`` is the position of the image in its split's pickle; ``class_index`` is the torchvision
    label (the class names are sorted); ``wnid`` is None.

    Args:
        root: folder holding (or receiving) ``cifar-100-python``.
        download: fetch the archive with torchvision when the pickles are missing.
    """
    dataset = "CIFAR-100"
    base = abspath(root)
    folder = base / CIFAR100_FOLDER
    needed = [folder / "meta", *(folder / f for f in CIFAR100_FILES.values())]
    if download and not all(p.is_file() for p in needed):
        from torchvision.datasets import CIFAR100

        _torchvision_download(
            dataset, base, lambda r: CIFAR100(r, train=True, download=True), f"{CIFAR100_FOLDER} under {base}"
        )
    for path in needed:
        require_file(path, dataset, CIFAR100_LAYOUT)
    names = [str(n) for n in _load_pickle(folder / "meta", dataset)["fine_label_names"]]
    if len(set(names)) != len(names):
        raise DatasetError(f"{dataset}: duplicate class names in {folder / 'meta'}")
    rows: list[tuple[str, str, str]] = []
    export = base / CIFAR100_EXPORT
    for split, file_name in CIFAR100_FILES.items():
        entry = _load_pickle(folder / file_name, dataset)
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry["fine_labels"], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
            raise DatasetError(
                f"{dataset}: {folder / file_name} holds data {data.shape}, labels {labels.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
            raise DatasetError(f"{dataset}: labels in {folder / file_name} outside 0..{len(names) - 1}")
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        existing: set[str] = set()
        for name in names:
            class_dir = export / split / name
            class_dir.mkdir(parents=True, exist_ok=True)
            with os.scandir(class_dir) as it:
                existing.update(e.path for e in it if e.name.endswith(".png"))
        written = 0
        for i in tqdm(range(len(labels)), desc=f"{dataset}: {split} PNGs", unit="img", leave=False):
            name = names[labels[i]]
            path = export / split / name / f"{i:05d}.png"
            if str(path) not in existing:
                _save_png_atomic(images[i], path)
                written += 1
            rows.append((str(path), split, name))
        log.info(
            "%s: %s split: %d images, %d PNG files written to %s",
            dataset,
            split,
            len(labels),
            written,
            export / split,
        )
    classes = {n: (n, None) for n in names}
    return make_manifest(rows, classes, dataset)


# ------------------------------------------------------------------------------------------ Oxford Pet

PETS_FOLDER = "oxford-iiit-pet"
PETS_LAYOUT = (
    f"<root>/{PETS_FOLDER}/images/*.jpg and <root>/{PETS_FOLDER}/annotations/trainval.txt, test.txt "
    "(images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/, extracted into "
    f"<root>/{PETS_FOLDER}); set download: true to fetch them"
)
PETS_SPLITS = {"train": "trainval.txt", "test": "test.txt"}


def pet_class_name(image_stem: str) -> str:
    """Class name of an Oxford-IIIT Pet image: ``american_bulldog_12`` -> ``american bulldog``."""
    return image_stem.rsplit("_", 1)[0].replace("_", " ").lower()


def build_oxford_pet(root: str, download: bool = False) -> pd.DataFrame:
    """Oxford-IIIT Pet: 37 breeds, official trainval (3,680) -> ``train``, test (3,669) -> ``test``.

    Layout (torchvision's ``OxfordIIITPet``)::

        <root>/oxford-iiit-pet/images/<Breed_Name>_<n>.jpg
        <root>/oxford-iiit-pet/annotations/trainval.txt   lines "<image stem> <class id> <species> <breed id>"
        <root>/oxford-iiit-pet/annotations/test.txt

    ``class_name`` is the image stem without its trailing number, underscores as spaces, lower-cased
    (``american bulldog``: torchvision's class names lower-cased); ``class_index`` its rank among the
    sorted names; ``wnid`` None.

    Args:
        root: folder holding (or receiving) ``oxford-iiit-pet``.
        download: fetch the archives with torchvision when the folder is missing.
    """
    dataset = "Oxford-IIIT Pet"
    base = abspath(root)
    folder = base / PETS_FOLDER
    if download and not ((folder / "images").is_dir() and (folder / "annotations").is_dir()):
        from torchvision.datasets import OxfordIIITPet

        _torchvision_download(
            dataset,
            base,
            lambda r: OxfordIIITPet(r, split="trainval", download=True),
            f"{PETS_FOLDER} under {base}",
        )
    images = require_dir(folder / "images", dataset, PETS_LAYOUT)
    rows: list[tuple[str, str, str]] = []
    label_of: dict[str, int] = {}
    missing: list[str] = []
    for split, file_name in PETS_SPLITS.items():
        ann = require_file(folder / "annotations" / file_name, dataset, PETS_LAYOUT)
        for line_no, line in enumerate(ann.read_text().splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) < 2:
                raise DatasetError(
                    f"{dataset}: {ann}:{line_no}: expected '<image> <class id> ...', got {line!r}"
                )
            stem, class_id = parts[0], int(parts[1])
            name = pet_class_name(stem)
            if label_of.setdefault(name, class_id) != class_id:
                raise DatasetError(
                    f"{dataset}: {ann}:{line_no}: class {name!r} has ids {label_of[name]} and {class_id}"
                )
            path = images / f"{stem}.jpg"
            if not path.is_file():
                missing.append(str(path))
            rows.append((str(path), split, name))
    if missing:
        raise DatasetError(
            f"{dataset}: {len(missing)} annotated images are missing (first: {', '.join(missing[:3])}); "
            f"expected {PETS_LAYOUT}"
        )
    classes = {n: (n, None) for n in label_of}
    return make_manifest(rows, classes, dataset)
