"""Builders of the public multi-label benchmarks: PASCAL VOC 2007/2012, MS-COCO 2014, NUS-WIDE
(``MULTILABEL_SPEC.md`` section 2); each returns a :class:`~s3a.multilabel.data.tables.MultiLabelData`."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from s3a.data.base import DatasetError, abspath
from s3a.multilabel.data.tables import DIFFICULT_MODES, VOC_CLASSES, ImageRecord, MultiLabelData, assemble

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
