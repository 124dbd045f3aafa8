"""Folder datasets: Caltech-101, any ``<root>/<class>/<image>`` tree, and unlabeled photo folders.

Per-class seeded splits follow :func:`s3a.data.base.seeded_split`: the files of a class are sorted by
path, ``np.random.RandomState(seed).permutation(n)`` (a fresh generator per class) orders them, the
first ``n - n_test`` of that order are train and the rest test, with
``n_test = floor(n * test_fraction + 0.5)`` capped at ``n - 1``.
"""

from __future__ import annotations

import logging
import os

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
    seeded_split,
)

__all__ = [
    "build_caltech101",
    "build_imagefolder",
    "build_folder",
    "walk_images",
    "CALTECH_EXCLUDED",
    "UNLABELED",
]

log = logging.getLogger(__name__)

CALTECH_FOLDER = "101_ObjectCategories"
CALTECH_EXCLUDED = frozenset({"background_google", "yin_yang"})
CALTECH_LAYOUT = (
    f"<root>/{CALTECH_FOLDER}/<Class>/*.jpg (101_ObjectCategories.tar.gz from "
    "https://data.caltech.edu/records/mzrjq-6wc02, extracted into <root>)"
)


def build_caltech101(root: str, seed: int = 0, train_fraction: float = 0.8) -> pd.DataFrame:
    """Caltech-101 without ``BACKGROUND_Google`` and ``Yin_yang``: 100 classes, seeded per-class split.

    Layout (``root`` may also be the ``101_ObjectCategories`` folder itself, or torchvision's
    ``<root>/caltech101/101_ObjectCategories``)::

        <root>/101_ObjectCategories/<Class>/image_0001.jpg

    ``class_name`` is the folder name lower-cased (``faces_easy``); ``class_index`` its rank among the
    sorted names; ``wnid`` None. Each class is split ``train_fraction`` / rest with the seeded rule of
    this module's docstring (10 images -> 8 train, 2 test).

    Args:
        root: the Caltech-101 root.
        seed: seed of the per-class permutation.
        train_fraction: share of each class used for training, in (0, 1].
    """
    dataset = "Caltech-101"
    base = abspath(root)
    nested = [base / CALTECH_FOLDER, base / "caltech101" / CALTECH_FOLDER]
    folder = next((c for c in nested if c.is_dir()), None)
    if (
        folder is None
        and base.is_dir()
        and (base.name == CALTECH_FOLDER or any(d.lower() == "faces_easy" for d in list_subdirs(base)))
    ):
        folder = base  # root points at 101_ObjectCategories itself
    if folder is None:
        raise DatasetError(f"{dataset}: no folder {base / CALTECH_FOLDER}; expected {CALTECH_LAYOUT}")
    if not 0.0 < train_fraction <= 1.0:
        raise DatasetError(f"{dataset}: train_fraction must be in (0, 1], got {train_fraction}")
    rows: list[tuple[str, str, str]] = []
    classes: dict[str, tuple[str, None]] = {}
    dirs = [d for d in list_subdirs(folder) if d.lower() not in CALTECH_EXCLUDED]
    for d in tqdm(dirs, desc=f"{dataset}: listing", unit="class", leave=False):
        name = d.lower()
        if name in classes:
            raise DatasetError(f"{dataset}: two folders in {folder} are named {name!r} ignoring case")
        files = list_images(folder / d)
        if not files:
            log.warning("%s: no images in %s; class skipped", dataset, folder / d)
            continue
        classes[name] = (name, None)
        splits = seeded_split(len(files), 1.0 - train_fraction, seed)
        rows.extend(zip(files, splits, [name] * len(files), strict=True))
    if len(classes) != 100:
        log.warning(
            "%s: %d classes in %s (the full dataset has 100 after exclusions)", dataset, len(classes), folder
        )
    return make_manifest(rows, classes, dataset, where=folder)


IMAGEFOLDER_LAYOUT = "<root>/<class>/<image> or <root>/train/<class>/<image> + <root>/test/<class>/<image>"


def _folder_class(folder: str) -> tuple[str, str | None]:
    """``(class_name, wnid)`` for a class folder name (the name is resolved later for wnids)."""
    wnid = folder if WNID_RE.fullmatch(folder) else None
    return folder.strip().lower().replace(" ", "_"), wnid


def build_imagefolder(root: str, test_fraction: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Any class-per-folder image tree.

    Layouts::

        <root>/<class>/<image>                                    all train (or a seeded split)
        <root>/train/<class>/<image> and <root>/test/<class>/<image>   used as the two splits

    Image files are those with the extensions of :data:`s3a.data.base.IMAGE_EXTENSIONS` (any case).
    ``class_name`` is the folder name lower-cased with spaces as underscores; a folder named by a wnid
    (``n01440764``) keeps it as ``wnid`` and takes its vocabulary name (:func:`s3a.vocab.wnid_names`)
    as ``class_name``. ``class_index`` is the rank of the class key (wnid, else class name) among the
    sorted keys.

    Args:
        root: the tree's root folder.
        test_fraction: for a tree without ``train``/``test`` folders, the share of each class put in
            the test split by the seeded rule of this module's docstring (0 keeps everything in train).
        seed: seed of that split.
    """
    dataset = f"imagefolder {root}"
    base = abspath(root)
    if not base.is_dir():
        raise DatasetError(f"imagefolder: no folder {base}; expected {IMAGEFOLDER_LAYOUT}")
    if (base / "train").is_dir() and (base / "test").is_dir():
        layout = {"train": base / "train", "test": base / "test"}
        if test_fraction:
            log.warning(
                "%s: train/ and test/ folders exist; test_fraction=%s ignored", dataset, test_fraction
            )
    else:
        layout = {"train": base}
    rows: list[tuple[str, str, str]] = []
    folder_of: dict[str, str] = {}  # class key -> folder name
    infos: dict[str, tuple[str, str | None]] = {}
    for split, top in layout.items():
        for d in tqdm(list_subdirs(top), desc=f"imagefolder: {split}", unit="class", leave=False):
            files = list_images(top / d)
            if not files:
                log.warning("imagefolder: class folder %s holds no images; it is skipped", top / d)
                continue
            name, wnid = _folder_class(d)
            key = wnid or name
            if folder_of.setdefault(key, d) != d:
                raise DatasetError(
                    f"imagefolder: folders {folder_of[key]!r} and {d!r} in {top} give the same class"
                )
            infos[key] = (name, wnid)
            if len(layout) == 1:
                splits = seeded_split(len(files), test_fraction, seed)
                rows.extend(zip(files, splits, [key] * len(files), strict=True))
            else:
                rows.extend((f, split, key) for f in files)
    if not infos:
        raise DatasetError(
            f"imagefolder: no class folders with images in {base}; expected {IMAGEFOLDER_LAYOUT}"
        )
    wnids = sorted(k for k, (_, w) in infos.items() if w is not None)
    if wnids:
        for wnid, name in zip(wnids, lookup_wnid_names(wnids), strict=True):
            infos[wnid] = (name, wnid)
    warn_out_of_vocabulary(sorted(name for name, wnid in infos.values() if wnid is None), dataset)
    return make_manifest(rows, infos, dataset)


def warn_out_of_vocabulary(class_names: list[str], dataset: str) -> list[str]:
    """Log a warning naming the class names that are not vocabulary names; return them.

    Their images count as out of vocabulary: the exact top-1 cannot be right for them (the soft
    accuracy still scores them). Name a folder by its vocabulary name or wnid to avoid it.
    """
    from s3a.vocab import load_synsets  # local import: the vocabulary module is heavier than this one

    known = set(load_synsets()["name"])
    unknown = [n for n in class_names if n not in known]
    if unknown:
        log.warning(
            "%s: %d of %d class folder names are not vocabulary names (%s): their images count as out of "
            "vocabulary; rename a folder to a WordNet name (e.g. golden_retriever) or its wnid to fix",
            dataset,
            len(unknown),
            len(class_names),
            ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else ""),
        )
    return unknown


#: the class name every image of an unlabeled folder carries (there is no ground truth)
UNLABELED = "unlabeled"
FOLDER_LAYOUT = "a folder of images, flat or in sub-folders of any depth"


def walk_images(root: str | os.PathLike[str], report: bool = True) -> list[str]:
    """Sorted absolute paths of every image file under ``root``, at any depth.

    Hidden files and hidden folders (names starting with ``.``) are skipped; symbolic links to files
    and folders are followed (a folder reached twice through links is listed once), except a link to
    a folder that holds ``root`` itself (a link to ``/``, to ``..``, to the folder): following it would
    list the whole disk. Broken links are skipped, and so are entries with an image's name that are
    not regular files (a FIFO, a socket, a device: opening one could block forever) and names that are
    not valid UTF-8 (the tables store text; rename them, e.g. with ``convmv``). Image files are those of
    :data:`s3a.data.base.IMAGE_EXTENSIONS`, in any case. With ``report``, what was skipped for these
    reasons is logged in one line. Cost: one ``scandir`` per folder, O(files) memory.
    """
    base = os.path.realpath(abspath(root))
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    skipped = {"links to a folder holding the photos": 0, "not regular files": 0, "names not in UTF-8": 0}

    def holds_root(top: str, name: str) -> bool:
        path = os.path.join(top, name)
        if not os.path.islink(path):
            return False
        target = os.path.realpath(path)
        return base == target or base.startswith(target.rstrip(os.sep) + os.sep)

    for top, dirs, files in os.walk(abspath(root), followlinks=True):
        st = os.stat(top)
        if (st.st_dev, st.st_ino) in seen:  # a link cycle or a second link to the same folder
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        kept = []
        for d in sorted(d for d in dirs if not d.startswith(".")):
            if holds_root(top, d):
                skipped["links to a folder holding the photos"] += 1
            else:
                kept.append(d)
        dirs[:] = kept
        for name in files:
            if not is_image(name) or name.startswith("."):
                continue
            path = os.path.join(top, name)
            if not os.path.isfile(path):
                skipped["not regular files"] += os.path.lexists(path) and not os.path.islink(path)
                continue
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                skipped["names not in UTF-8"] += 1
                continue
            found.append(path)
    if report and any(skipped.values()):
        what = ", ".join(f"{n} {why}" for why, n in skipped.items() if n)
        log.warning("folder %s: skipped %s", base, what)
    return sorted(found)


def build_folder(root: str) -> pd.DataFrame:
    """A folder of unlabeled images (your photos): every image is named, nothing is evaluated.

    Layout: any tree of image files under ``root`` (flat, or nested at any depth; see
    :func:`walk_images` for hidden files and links). Sub-folder names are *not* classes. Every image
    is in the ``train`` split (S3A adapts on the unlabeled images it names) with ``class_index`` 0,
    ``class_name`` :data:`UNLABELED` and ``wnid`` None; the workflow produces names and a gallery for
    this kind, and no evaluation rows.

    Args:
        root: the photo folder.
    """
    base = abspath(root)
    if not base.is_dir():
        raise DatasetError(f"folder: no folder {base}; expected {FOLDER_LAYOUT}")
    files = walk_images(base)
    log.info("folder %s: %d image files", base, len(files))
    rows = [(f, "train", UNLABELED) for f in files]
    return make_manifest(rows, {UNLABELED: (UNLABELED, None)}, f"folder {base}", where=base)
