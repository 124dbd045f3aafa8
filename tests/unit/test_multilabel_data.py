"""Multi-label dataset builders (MULTILABEL_SPEC 2, 11.2) on fixture layouts and the shared photos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from s3a.data.base import MANIFEST_COLUMNS, DatasetError
from s3a.multilabel.data.benchmarks import build_coco2014, build_nuswide, build_voc
from s3a.multilabel.data.mosaic import build_generated_multilabel, build_mosaic
from s3a.multilabel.data.registry import build_multilabel
from s3a.multilabel.data.tables import (
    LABEL_SET_COLUMNS,
    LABELS_COLUMNS,
    VOC_CLASSES,
    attach_vocab_index,
    label_matrix,
    readable_prompt,
)


def _jpeg(path: Path, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 200)).save(path)


def _check_tables(data, n_labels: int) -> None:
    assert list(data.manifest.columns) == list(MANIFEST_COLUMNS)
    assert list(data.labels.columns) == list(LABELS_COLUMNS)
    assert list(data.label_set.columns) == list(LABEL_SET_COLUMNS)
    assert len(data.label_set) == n_labels
    assert data.manifest["image_id"].tolist() == list(range(len(data.manifest)))
    assert set(data.manifest["split"]) <= {"train", "test"}


def _voc_tree(root: Path, year: str) -> None:
    base = root / "VOCdevkit" / f"VOC{year}"
    objects = {
        "a1": [("dog", 0, (1, 1, 20, 10)), ("person", 0, (1, 1, 40, 30))],
        "a2": [("cat", 1, (1, 1, 5, 5)), ("cat", 0, (1, 1, 10, 10)), ("chair", 1, (2, 2, 6, 6))],
        "b1": [("tvmonitor", 0, (1, 1, 10, 10))],
    }
    for stem, objs in objects.items():
        body = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
            f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for n, d, b in objs
        )
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><size><width>40</width><height>30</height></size>{body}</annotation>"
        )
        _jpeg(base / "JPEGImages" / f"{stem}.jpg")
    (base / "ImageSets" / "Main").mkdir(parents=True)
    train, test = ("trainval", "test") if year == "2007" else ("train", "val")
    (base / "ImageSets" / "Main" / f"{train}.txt").write_text("a1\na2\n")
    (base / "ImageSets" / "Main" / f"{test}.txt").write_text("b1\n")


@pytest.mark.parametrize("year", ["2007", "2012"])
def test_voc_builder(tmp_path, year):
    _voc_tree(tmp_path, year)
    data = build_multilabel(f"voc{year}", {"root": str(tmp_path)})
    _check_tables(data, 20)
    man, lab, ls = data.manifest, data.labels, data.label_set
    assert list(ls["name"]) == sorted(VOC_CLASSES)
    assert ls.set_index("name").loc["diningtable", "prompt"] == "dining table"
    idx = {n: i for i, n in enumerate(VOC_CLASSES)}
    assert man["split"].tolist() == ["train", "train", "test"]
    # a1: person (40x30) dominates dog (20x10)
    assert man.loc[0, "class_name"] == "person" and man.loc[0, "class_index"] == idx["person"]
    a2 = lab[lab.image_id == 1].set_index("label_index")
    assert not a2.loc[idx["cat"], "difficult"]  # one non-difficult cat instance
    assert a2.loc[idx["chair"], "difficult"]  # its only instance is difficult
    assert a2.loc[idx["cat"], "max_instance_area"] == 100.0
    assert math.isclose(a2.loc[idx["cat"], "area_fraction"], (25 + 100) / 1200, rel_tol=1e-6)
    assert ls.loc[idx["cat"], "n_train"] == 1 and ls.loc[idx["tvmonitor"], "n_test"] == 1
    neg = build_voc(str(tmp_path), year, difficult="negative").labels
    assert idx["chair"] not in neg[neg.image_id == 1]["label_index"].tolist()
    pos = build_voc(str(tmp_path), year, difficult="positive").labels
    assert not pos["difficult"].any() and len(pos) == len(lab)
    assert build_voc(str(tmp_path), year, prompt_style="raw").label_set["prompt"].tolist() == sorted(
        VOC_CLASSES
    )


def test_voc_errors_name_the_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"VOC2012/Annotations.*host.robots.ox.ac.uk"):
        build_voc(str(tmp_path), "2012")
    _voc_tree(tmp_path, "2012")
    (tmp_path / "VOCdevkit/VOC2012/Annotations/a2.xml").unlink()
    with pytest.raises(DatasetError, match=r"a2\.xml"):
        build_voc(str(tmp_path), "2012")
    with pytest.raises(DatasetError, match="difficult"):
        build_voc(str(tmp_path), "2012", difficult="maybe")


def _coco_tree(root: Path) -> None:
    (root / "annotations").mkdir(parents=True)
    cats = [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    train_anns = [(10, 1, 500.0), (10, 18, 900.0), (11, 3, 2000.0), (11, 3, 10.0)]
    for split, images, anns in (
        ("train2014", [(10, "x.jpg"), (11, "y.jpg"), (12, "empty.jpg")], train_anns),
        ("val2014", [(20, "z.jpg")], [(20, 18, 50.0)]),
    ):
        for _, name in images:
            _jpeg(root / split / name)
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps(
                {
                    "images": [{"id": i, "file_name": f, "width": 40, "height": 30} for i, f in images],
                    "annotations": [{"image_id": i, "category_id": c, "area": a} for i, c, a in anns],
                    "categories": cats,
                }
            )
        )


def test_coco_builder(tmp_path):
    _coco_tree(tmp_path)
    data = build_coco2014(str(tmp_path))
    _check_tables(data, 3)
    assert data.label_set["name"].tolist() == ["person", "car", "dog"]  # category-id order
    man = data.manifest
    assert len(man) == 3 and man["split"].tolist() == ["train", "train", "test"]  # empty.jpg dropped
    assert man.loc[0, "class_name"] == "dog"  # x.jpg: dog 900 > person 500
    y = data.labels[data.labels.image_id == 1]
    assert y["label_index"].tolist() == [1] and y["max_instance_area"].tolist() == [2000.0]
    assert len(build_coco2014(str(tmp_path), drop_unlabeled=False).manifest) == 4
    (tmp_path / "annotations" / "instances_val2014.json").unlink()
    with pytest.raises(DatasetError, match=r"instances_val2014\.json.*cocodataset\.org"):
        build_coco2014(str(tmp_path))


def test_nuswide_builder(tmp_path):
    (tmp_path / "benchmark_81_v0.json").write_text(
        json.dumps({"train class": ["sky", "water", "tree"], "test class": ["dog", "cat"]})
    )
    pd.DataFrame(
        {
            "filepath": ["a.jpg", "b.jpg", "c.jpg"],
            "labels": ["['dog', 'sky']", "[]", "['cat', 'dog', 'water']"],
            "split_name": ["train", "train", "val"],
        }
    ).to_csv(tmp_path / "data.csv", index=False)
    data = build_nuswide(str(tmp_path))
    _check_tables(data, 2)
    assert data.label_set["name"].tolist() == ["cat", "dog"]
    assert (data.manifest["class_index"] == -1).all() and data.manifest["class_name"].isna().all()
    assert data.labels["max_instance_area"].isna().all()
    full = build_nuswide(str(tmp_path), label_space="all")
    assert full.label_set["name"].tolist() == ["cat", "dog", "sky", "tree", "water"]
    assert full.label_set["seen"].tolist() == [False, False, True, True, True]
    assert len(full.labels) == 5
    (tmp_path / "data.csv").unlink()
    with pytest.raises(DatasetError, match=r"data\.csv.*ML_Decoder"):
        build_nuswide(str(tmp_path))


def test_label_matrix_and_vocab_index():
    labels = pd.DataFrame(
        {
            "image_id": np.array([0, 0, 2], np.int64),
            "label_index": np.array([1, 2, 0], np.int32),
            "difficult": [False, True, False],
            "area_fraction": np.float32([0.1, 0.2, 0.3]),
            "max_instance_area": np.float32([10, 20, np.nan]),
        }
    )
    y, diff, area = label_matrix(labels, np.array([2, 0]), 3)
    assert y.tolist() == [[True, False, False], [False, True, True]]
    assert diff.tolist() == [[False, False, False], [False, False, True]]
    assert area[1, 2] == 20 and np.isnan(area[0, 0])
    vocab = pd.DataFrame(
        {"vocab_index": [0, 1], "name": ["dog", "dining_table"], "synset_ids": [["n02084071"], ["n03201208"]]}
    )
    ls = pd.DataFrame(
        {"name": ["dog", "dining table", "zebra", "x"], "wnid": [None, None, None, "n03201208"]}
    )
    assert attach_vocab_index(ls, vocab)["vocab_index"].tolist() == [0, 1, -1, 1]
    assert (
        readable_prompt("pottedplant") == "potted plant"
        and readable_prompt("great_white_shark") == "great white shark"
    )


def test_generated_multilabel(tmp_path):
    data = build_generated_multilabel(str(tmp_path / "g"), n_train=12, n_test=6, canvas=64)
    _check_tables(data, 6)
    counts = data.labels.groupby("image_id").size()
    assert counts.between(1, 4).all() and len(counts) == 18
    assert all(Path(p).is_file() for p in data.manifest["path"])
    with Image.open(data.manifest["path"][0]) as img:
        assert img.size == (64, 64)
    again = build_generated_multilabel(str(tmp_path / "g"), n_train=12, n_test=6, canvas=64)
    pd.testing.assert_frame_equal(data.labels, again.labels)


@pytest.mark.data
def test_mosaic_follows_the_spec_draw(shared_data, tmp_path):
    source = shared_data / "imagenet-sample"
    if not source.is_dir():
        pytest.skip(f"{source} is absent")
    data = build_mosaic(str(tmp_path / "m"), str(source), classes=20, n_train=30, n_test=10, canvas=96)
    _check_tables(data, 20)
    wnids = data.label_set["wnid"].tolist()
    assert wnids[:5] == ["n01560419", "n01682714", "n01773797", "n02091244", "n02113624"]
    assert wnids[-1] == "n07880968" and data.label_set["name"].iloc[0] == "bulbul"
    assert data.label_set["prompt"].iloc[-1] == "burrito"
    per_image = data.labels.groupby("image_id").size()
    assert per_image.between(1, 4).all() and 2.0 < per_image.mean() < 3.6
    assert data.manifest["path"].iloc[0].endswith("train/mosaic_00000.jpg")
    assert data.manifest["path"].iloc[-1].endswith("test/mosaic_00009.jpg")
    # regions: areas are a quarter, a half or the whole canvas; the largest is the dominant label
    assert set(np.round(data.labels["area_fraction"], 4)) <= {0.25, 0.5, 1.0}
    with pytest.raises(DatasetError, match="source folder"):
        build_mosaic(str(tmp_path / "x"), str(tmp_path / "nowhere"))


def test_mosaic_from_class_folders(tmp_path):
    for c in ("ant", "bee", "cow", "dog", "elk"):
        for i in range(3):
            _jpeg(tmp_path / "src" / c / f"{i}.jpg", size=(20 + i, 20))
    data = build_mosaic(str(tmp_path / "m"), str(tmp_path / "src"), classes=4, n_train=5, n_test=2, canvas=32)
    assert len(data.manifest) == 7 and data.label_set["wnid"].isna().all()


def test_registry_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown multi-label dataset kind 'voc2099'"):
        build_multilabel("voc2099", {})
    with pytest.raises(DatasetError, match="bad parameters"):
        build_multilabel("coco2014", {"root": str(tmp_path), "colour": 1})
