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
"""

from __future__ import annotations

import json
import logging
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from s3a.data.base import MANIFEST_COLUMNS, DatasetError, abspath, is_image, list_subdirs

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
]

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

_VOC_HELP = (
    "download the PASCAL VOC {year} trainval (and, for 2007, test) tar files from "
    "http://host.robots.ox.ac.uk/pascal/VOC/voc{year}/ and extract them under the root"
)
_VOC_SPLITS = {
    "2007": (("trainval", "train"), ("test", "test")),
    "2012": (("train", "train"), ("val", "test")),
}


def _voc_objects(xml_path: Path, dataset: str, index: Mapping[str, int]) -> tuple[list, float]:
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise DatasetError(f"{dataset}: cannot read annotation {xml_path}: {exc}") from exc
    size = root.find("size")
    width = float(size.findtext("width", "nan")) if size is not None else math.nan
    height = float(size.findtext("height", "nan")) if size is not None else math.nan
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in index:
            raise DatasetError(
                f"{dataset}: unknown class {name!r} in {xml_path}; expected one of {VOC_CLASSES}"
            )
        box = obj.find("bndbox")
        area = math.nan
        if box is not None:
            x0, y0, x1, y1 = (float(box.findtext(k, "nan")) for k in ("xmin", "ymin", "xmax", "ymax"))
            area = max(0.0, x1 - x0 + 1) * max(0.0, y1 - y0 + 1)  # VOC boxes are inclusive pixel indices
        objects.append((index[name], (obj.findtext("difficult") or "0").strip() == "1", area))
    return objects, width * height


def build_voc(
    root: str, year: str = "2012", difficult: str = "ignore", prompt_style: str = "readable"
) -> MultiLabelData:
    """PASCAL VOC 2007 or 2012 from ``root/VOCdevkit/VOC<year>/{Annotations,ImageSets/Main,JPEGImages}``.

    Splits: 2007 ``trainval`` -> train, ``test`` -> test; 2012 ``train`` -> train, ``val`` -> test.

    Args:
        difficult: ``ignore`` (default: labels whose every instance is difficult stay in ``labels``
            with ``difficult=True`` and are masked out of that label's AP), ``positive`` (counted as
            positives, as the CDUL reproduction does), ``negative`` (dropped: the label counts as
            absent).
    """
    year = str(year)
    dataset = f"voc{year}"
    if year not in _VOC_SPLITS:
        raise DatasetError(f"voc: year must be 2007 or 2012, got {year!r}")
    if difficult not in DIFFICULT_MODES:
        raise DatasetError(f"{dataset}: difficult must be one of {DIFFICULT_MODES}, got {difficult!r}")
    base = abspath(root) / "VOCdevkit" / f"VOC{year}"
    help_text = _VOC_HELP.format(year=year)
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        if not (base / sub).is_dir():
            raise DatasetError(f"{dataset}: no folder {base / sub}; {help_text}")
    index = {n: i for i, n in enumerate(VOC_CLASSES)}
    records = []
    for file_split, split in _VOC_SPLITS[year]:
        listing = base / "ImageSets" / "Main" / f"{file_split}.txt"
        if not listing.is_file():
            raise DatasetError(f"{dataset}: no file {listing}; {help_text}")
        for stem in listing.read_text().split():
            xml_path = base / "Annotations" / f"{stem}.xml"
            if not xml_path.is_file():
                raise DatasetError(f"{dataset}: no file {xml_path} (listed in {listing}); {help_text}")
            objects, image_area = _voc_objects(xml_path, dataset, index)
            if difficult == "positive":
                objects = [(lab, False, a) for lab, _, a in objects]
            elif difficult == "negative":
                objects = [o for o in objects if not o[1]]
            records.append(
                ImageRecord(str(base / "JPEGImages" / f"{stem}.jpg"), split, tuple(objects), image_area)
            )
    return assemble(dataset, records, VOC_CLASSES, prompt_style=prompt_style)


# -------------------------------------------------------------------------------------------- COCO

_COCO_HELP = (
    "download train2014.zip, val2014.zip and annotations_trainval2014.zip from "
    "https://cocodataset.org/#download and extract them under the root"
)


def build_coco2014(root: str, drop_unlabeled: bool = True, prompt_style: str = "readable") -> MultiLabelData:
    """MS-COCO 2014: images in ``root/{train2014,val2014}/``, ``root/annotations/instances_*2014.json``.

    train2014 -> train, val2014 -> test. Labels in category-id order (80). ``max_instance_area`` is
    the annotation's ``area`` (segment area in px², what COCO's size buckets use).

    Args:
        drop_unlabeled: drop images without any annotation (ML-Decoder's protocol; ~82.1k / 40.1k
            images remain).
    """
    dataset = "coco2014"
    base = abspath(root)
    records: list[ImageRecord] = []
    names: list[str] | None = None
    for split_dir, split in (("train2014", "train"), ("val2014", "test")):
        ann = base / "annotations" / f"instances_{split_dir}.json"
        if not ann.is_file():
            raise DatasetError(f"{dataset}: no file {ann}; {_COCO_HELP}")
        if not (base / split_dir).is_dir():
            raise DatasetError(f"{dataset}: no folder {base / split_dir}; {_COCO_HELP}")
        with open(ann) as fh:
            data = json.load(fh)
        cats = sorted(data["categories"], key=lambda c: int(c["id"]))
        these = [str(c["name"]) for c in cats]
        if names is not None and these != names:
            raise DatasetError(
                f"{dataset}: the categories of {ann} differ from those of the train annotations"
            )
        names = these
        cat_index = {int(c["id"]): i for i, c in enumerate(cats)}
        objects: dict[int, list[tuple[int, bool, float]]] = {}
        for a in data["annotations"]:
            objects.setdefault(int(a["image_id"]), []).append(
                (cat_index[int(a["category_id"])], False, float(a["area"]))
            )
        for img in data["images"]:
            objs = objects.get(int(img["id"]), [])
            if drop_unlabeled and not objs:
                continue
            area = float(img.get("width", math.nan)) * float(img.get("height", math.nan))
            records.append(ImageRecord(str(base / split_dir / img["file_name"]), split, tuple(objs), area))
    return assemble(dataset, records, names or [], prompt_style=prompt_style)


# ---------------------------------------------------------------------------------------- NUS-WIDE

_NUS_HELP = (
    "NUS-WIDE in ML-Decoder's layout: images under root/images, root/data.csv and "
    "root/benchmark_81_v0.json (see https://github.com/Alibaba-MIIL/ML_Decoder, docs for NUS-WIDE ZSL)"
)


def _parse_label_list(text: str) -> list[str]:
    inner = str(text).strip().strip("[]")
    return [t.strip().strip("'\"").strip() for t in inner.split(",") if t.strip().strip("'\"").strip()]


def build_nuswide(root: str, label_space: str = "test", prompt_style: str = "readable") -> MultiLabelData:
    """NUS-WIDE from ML-Decoder's files: ``root/data.csv`` and ``root/benchmark_81_v0.json``.

    ``data.csv`` has a header and three columns read by position: image path (relative to
    ``root/images``), the label list written ``"['l1', 'l2']"``, and the split (``train``/``val``,
    val -> test). ``benchmark_81_v0.json`` holds ``"train class"`` (925 seen) and ``"test class"``
    (81 unseen) name lists. Labels are sorted names; ``class_index`` is -1 (no areas).

    Args:
        label_space: ``test`` (the 81 concepts; the CDUL protocol) or ``all`` (925 seen + 81
            unseen, ``seen`` marking the former; the ZSL/GZSL protocol).
    """
    dataset = "nuswide"
    base = abspath(root)
    csv_path, bench = base / "data.csv", base / "benchmark_81_v0.json"
    for path in (csv_path, bench):
        if not path.is_file():
            raise DatasetError(f"{dataset}: no file {path}; {_NUS_HELP}")
    if label_space not in ("test", "all"):
        raise DatasetError(f"{dataset}: label_space must be 'test' or 'all', got {label_space!r}")
    spec = json.loads(bench.read_text())
    seen_names = {str(n).strip() for n in spec["train class"]}
    test_names = {str(n).strip() for n in spec["test class"]}
    names = sorted(test_names if label_space == "test" else seen_names | test_names)
    index = {n: i for i, n in enumerate(names)}
    frame = pd.read_csv(csv_path)
    if frame.shape[1] < 3:
        raise DatasetError(f"{dataset}: {csv_path} needs three columns (path, labels, split)")
    split_map = {"train": "train", "val": "test", "test": "test"}
    records = []
    for path, labs, split in frame.iloc[:, :3].itertuples(index=False):
        if str(split) not in split_map:
            raise DatasetError(f"{dataset}: unknown split {split!r} for {path} in {csv_path}")
        objs = tuple(
            (index[n], False, math.nan) for n in dict.fromkeys(_parse_label_list(labs)) if n in index
        )
        records.append(ImageRecord(str(base / "images" / str(path)), split_map[str(split)], objs))
    seen = [n in seen_names for n in names]
    return assemble(dataset, records, names, seen=seen, prompt_style=prompt_style)


# ------------------------------------------------------------------------------ mosaics (composed)


def cover_resize(photo: Image.Image, width: int, height: int) -> Image.Image:
    """Resize (bicubic) to cover ``width x height`` and centre-crop to it."""
    scale = max(width / photo.width, height / photo.height)
    w, h = max(width, round(photo.width * scale)), max(height, round(photo.height * scale))
    resized = photo.resize((w, h), Image.BICUBIC)
    left, top = (w - width) // 2, (h - height) // 2
    return resized.crop((left, top, left + width, top + height))


def _compose(regions, photos: Sequence[Image.Image], canvas: int) -> Image.Image:
    cell = canvas // 2
    out = Image.new("RGB", (canvas, canvas))
    for (x0, y0, x1, y1), photo in zip(regions, photos, strict=True):
        box = (x0 * cell, y0 * cell, x1 * cell, y1 * cell)
        out.paste(cover_resize(photo, box[2] - box[0], box[3] - box[1]), box[:2])
    return out


def _stamped(folder: Path, params: dict, files: Sequence[Path]) -> bool:
    stamp = folder / ".mosaic.json"
    try:
        return json.loads(stamp.read_text()) == params and all(f.is_file() for f in files)
    except (OSError, ValueError):
        return False


def _draw_layouts(rng: np.random.Generator, n: int, k: int, probs: Sequence[float]):
    names = list(LAYOUTS)
    for _ in range(n):
        layout = names[int(rng.choice(len(names), p=probs))]
        regions = LAYOUTS[layout]
        yield regions, [int(v) for v in rng.choice(k, len(regions), replace=False)]


def _composed(
    dataset: str,
    root: str,
    names: Sequence[str],
    wnids: Sequence[str | None],
    draws: list,
    paint,
    canvas: int,
    params: dict,
) -> MultiLabelData:
    """Write (once) the composed images of ``draws`` = ``[(split, i, regions, labels, extra)]``."""
    base = abspath(root)
    files = [base / split / f"mosaic_{i:05d}.jpg" for split, i, *_ in draws]
    cell = canvas // 2
    if not _stamped(base, params, files):
        (base / ".mosaic.json").unlink(missing_ok=True)
        for sub in ("train", "test"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for path, (_, _, regions, labels, extra) in zip(files, draws, strict=True):
            image = _compose(regions, paint(labels, extra, regions), canvas)
            tmp = path.with_name(f".{path.name}.tmp")
            image.save(tmp, format="JPEG", quality=MOSAIC_JPEG_QUALITY)
            os.replace(tmp, path)
        (base / ".mosaic.json").write_text(json.dumps(params, indent=1))
        log.info("%s: composed %d images into %s", dataset, len(files), base)
    records = []
    for path, (split, _, regions, labels, _) in zip(files, draws, strict=True):
        objs = tuple(
            (lab, False, float((x1 - x0) * (y1 - y0) * cell * cell))
            for (x0, y0, x1, y1), lab in zip(regions, labels, strict=True)
        )
        records.append(ImageRecord(str(path), split, objs, float(canvas * canvas)))
    return assemble(dataset, records, names, wnids=wnids)


def _source_photos(source: Path) -> tuple[list[str], list[str | None], list[list[str]]]:
    """Classes of a photo source: a flat folder of ``<wnid>_<name>.<ext>`` files (one photo per
    class, ImageNet-sample style) or a folder of ``<class>/`` sub-folders (every photo of the class)."""
    subdirs = list_subdirs(source)
    if subdirs:
        photos = [sorted(str(source / d / f) for f in os.listdir(source / d) if is_image(f)) for d in subdirs]
        keep = [i for i, p in enumerate(photos) if p]
        return [subdirs[i] for i in keep], [None] * len(keep), [photos[i] for i in keep]
    files = sorted(f for f in os.listdir(source) if is_image(f))
    names, wnids = [], []
    for f in files:
        stem = os.path.splitext(f)[0]
        head, _, rest = stem.partition("_")
        is_wnid = len(head) == 9 and head[0] == "n" and head[1:].isdigit() and rest
        names.append(rest if is_wnid else stem)
        wnids.append(head if is_wnid else None)
    return names, wnids, [[str(source / f)] for f in files]


def build_mosaic(
    root: str,
    source: str,
    classes: int = 20,
    n_train: int = 120,
    n_test: int = 120,
    canvas: int = 672,
    seed: int = 0,
    layout_probs: Sequence[float] = LAYOUT_PROBS,
) -> MultiLabelData:
    """Multi-label images composed from real single-label photos, with known labels (spec 11.2).

    ``rng = numpy.random.default_rng(seed)``; the K = ``classes`` classes are
    ``sorted(rng.choice(n_source_classes, K, replace=False))`` over the source's sorted classes.
    Then, per mosaic (train first, then test, one stream): a layout of :data:`LAYOUTS` drawn with
    ``layout_probs``, its regions' labels ``rng.choice(K, n_regions, replace=False)``; each region is
    filled with a photo of its class resized to cover it (bicubic) and centre-cropped. With a
    class-folder source the photo is ``rng.integers(n_photos)`` of that class (drawn after the
    labels); a flat folder (``imagenet-sample``: one photo per class) always gives the class's one
    photo, so train and test mosaics reuse the same photos in new combinations — fine for pipeline
    checks, not a generalisation benchmark. The canvas is 2x2 cells (672 px = 3x3 tiles of exactly
    224 px); JPEG quality 90; files ``<root>/<split>/mosaic_<i:05d>.jpg``; the area of a label is its
    region's. Files are rewritten only when the parameters change.
    """
    dataset = "mosaic"
    src = abspath(source)
    if not src.is_dir():
        raise DatasetError(
            f"{dataset}: no source folder {src}; expected a folder of <wnid>_<name>.JPEG photos "
            "(e.g. ../shared/data/imagenet-sample) or of <class>/ photo folders"
        )
    all_names, all_wnids, all_photos = _source_photos(src)
    if len(all_names) < classes or classes < 4:
        raise DatasetError(
            f"{dataset}: need 4 <= classes <= {len(all_names)} (the classes in {src}), got {classes}"
        )
    if canvas % 2 or canvas < 32:
        raise DatasetError(f"{dataset}: canvas must be an even number of pixels >= 32, got {canvas}")
    probs = np.asarray(layout_probs, dtype=float)
    if probs.shape != (len(LAYOUTS),) or (probs < 0).any() or not np.isclose(probs.sum(), 1.0):
        raise DatasetError(f"{dataset}: layout_probs must be {len(LAYOUTS)} probabilities summing to 1")
    rng = np.random.default_rng(seed)
    chosen = sorted(int(i) for i in rng.choice(len(all_names), classes, replace=False))
    draws = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i, (regions, labels) in enumerate(_draw_layouts(rng, n, classes, probs)):
            picks = [
                int(rng.integers(len(all_photos[chosen[lab]]))) if len(all_photos[chosen[lab]]) > 1 else 0
                for lab in labels
            ]
            draws.append((split, i, regions, labels, picks))

    def paint(labels, picks, regions):
        out = []
        for lab, pick in zip(labels, picks, strict=True):
            with Image.open(all_photos[chosen[lab]][pick]) as img:
                out.append(img.convert("RGB"))
        return out

    params = {
        "source": str(src),
        "classes": classes,
        "n_train": n_train,
        "n_test": n_test,
        "canvas": canvas,
        "seed": seed,
        "layout_probs": [float(p) for p in probs],
        "quality": MOSAIC_JPEG_QUALITY,
    }
    names = [all_names[i] for i in chosen]
    wnids = [all_wnids[i] for i in chosen]
    return _composed(dataset, root, names, wnids, draws, paint, canvas, params)


def build_generated_multilabel(
    root: str,
    classes: Sequence[str] = ("circle", "square", "triangle", "star", "cross", "grid"),
    n_train: int = 60,
    n_test: int = 30,
    canvas: int = 192,
    seed: int = 0,
) -> MultiLabelData:
    """The offline demo's multi-label set: 1-4 drawn shapes (:mod:`s3a.data.generated`) per 2x2
    canvas, laid out as :func:`build_mosaic` does (same layouts and probabilities); each region's
    shape is drawn with ``RandomState([seed, split, i, region])``. Files ``<root>/<split>/mosaic_<i>.jpg``."""
    from s3a.data.generated import SHAPES, draw_image

    dataset = "generated_multilabel"
    classes = [str(c) for c in classes]
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or len(set(classes)) != len(classes) or len(classes) < 4:
        raise DatasetError(f"{dataset}: need >= 4 distinct shapes of {sorted(SHAPES)}, got {classes}")
    rng = np.random.default_rng(seed)
    draws = []
    for s, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        for i, (regions, labels) in enumerate(_draw_layouts(rng, n, len(classes), LAYOUT_PROBS)):
            draws.append((split, i, regions, labels, (s, i)))
    cell = canvas // 2

    def paint(labels, key, regions):
        out = []
        for r, (lab, (x0, y0, x1, y1)) in enumerate(zip(labels, regions, strict=True)):
            side = max(x1 - x0, y1 - y0) * cell
            out.append(draw_image(classes[lab], np.random.RandomState([seed, key[0], key[1], r]), side))
        return out

    params = {
        "classes": classes,
        "n_train": n_train,
        "n_test": n_test,
        "canvas": canvas,
        "seed": seed,
        "kind": dataset,
    }
    return _composed(dataset, root, classes, [None] * len(classes), draws, paint, canvas, params)


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
