"""Dataset builders and the manifest registry (``s3a.data``)."""

from __future__ import annotations

import io
import os
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from s3a.data import DATASETS, MANIFEST_COLUMNS, DatasetError, build_manifest
from s3a.data import breeds as breeds_mod
from s3a.data.base import seeded_split
from s3a.data.breeds import BREEDS_FILES, breeds_leaf_wnids
from s3a.data.generated import DEFAULT_CLASSES
from s3a.data.imagenet import imagenet100_wnids

# S3A_SHARED_DATA points elsewhere (e.g. a copy carried to a GPU machine), as in tests/conftest.py
DATA = Path(os.environ.get("S3A_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
SAMPLE = DATA / "imagenet-sample"
BREEDS = DATA / "breeds"
CIFAR10 = DATA / "cifar10-test"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real test data not found at {path}")
    return path


def _check_schema(frame: pd.DataFrame) -> None:
    assert tuple(frame.columns) == MANIFEST_COLUMNS
    assert frame["image_id"].dtype == np.int64 and frame["class_index"].dtype == np.int64
    assert np.array_equal(frame["image_id"], np.arange(len(frame)))
    rank = frame["split"].map({"train": 0, "test": 1})
    order = pd.DataFrame({"r": rank, "c": frame["class_index"], "p": frame["path"]})
    assert order.equals(order.sort_values(["r", "c", "p"]).reset_index(drop=True))
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in frame["path"])


@pytest.fixture(scope="module")
def imagenet_tree(tmp_path_factory) -> Path:
    """A 1000-class ImageNet tree of symlinks: one photo per class in train/<wnid> and val/<wnid>."""
    sample = _need(SAMPLE)
    root = tmp_path_factory.mktemp("imagenet")
    for photo in sorted(sample.glob("n*.JPEG")):
        wnid = photo.name[:9]
        for split in ("train", "val"):
            (root / split / wnid).mkdir(parents=True)
            (root / split / wnid / photo.name).symlink_to(photo)
    return root


# ------------------------------------------------------------------------------------------ registry


def test_registry_lists_every_kind():
    assert set(DATASETS) == {
        "imagenet1k", "imagenet100", "living17", "nonliving26", "entity13", "entity30",
        "stanford_dogs", "caltech101", "cifar100", "oxford_pet", "imagefolder", "generated", "folder",
    }  # fmt: skip
    assert all(callable(b) and b.__doc__ for b in DATASETS.values())


def test_unknown_kind_lists_known_kinds():
    with pytest.raises(DatasetError, match="unknown dataset kind 'imagenet2k'.*caltech101.*imagenet100"):
        build_manifest("imagenet2k", {"root": "/x"})


def test_unknown_and_missing_params_are_named(tmp_path):
    accepted = "accepted: root, seed, train_fraction"
    with pytest.raises(DatasetError, match=rf"unknown parameter\(s\) seeds; {accepted}"):
        build_manifest("caltech101", {"root": str(tmp_path), "seeds": 1})
    with pytest.raises(DatasetError, match=r"missing required parameter\(s\) root"):
        build_manifest("imagefolder", {})


def test_seeded_split_rule():
    s = seeded_split(10, 0.2, 0)
    assert (s == "train").sum() == 8 and (s == "test").sum() == 2
    assert list(s) == list(seeded_split(10, 0.2, 0))
    assert (seeded_split(31, 1 - 0.8, 0) == "test").sum() == 6
    assert (seeded_split(1, 0.5, 0) == "train").all()
    assert list(s) != list(seeded_split(10, 0.2, 1))


# ------------------------------------------------------------------------------------------ ImageNet


@pytest.mark.data
def test_imagenet1k_on_sample_tree(imagenet_tree):
    m = build_manifest("imagenet1k", {"root": str(imagenet_tree)})
    _check_schema(m)
    assert len(m) == 2000 and m["class_index"].nunique() == 1000
    assert (m["split"] == "train").sum() == 1000
    row = m[(m["wnid"] == "n02101006") & (m["split"] == "train")].iloc[0]
    assert row["class_name"] == "gordon_setter"
    assert m.loc[0, "wnid"] == "n01440764" and m.loc[0, "class_name"] == "tench"
    wnids = sorted(m["wnid"].unique())
    assert (m["class_index"] == m["wnid"].map({w: i for i, w in enumerate(wnids)})).all()
    # duplicate names (crane) stay two classes
    assert (m.drop_duplicates("class_index")["class_name"] == "crane").sum() == 2


@pytest.mark.data
def test_imagenet1k_has_997_named_classes(imagenet_tree):
    """crane, cardigan and maillot each name two wnids: the official evaluation (top-1 and cluster
    accuracy) has 997 named classes, and config.yaml's k for imagenet1k is 997."""
    import yaml

    from s3a.metrics import gt_vocab_index, named_classes, stage_metrics
    from s3a.vocab import build_vocabulary

    m = build_manifest("imagenet1k", {"root": str(imagenet_tree)})
    vocabulary = build_vocabulary()
    gt = gt_vocab_index(list(m["wnid"]), list(m["class_name"]), vocabulary)
    named = named_classes(gt, list(m["class_name"]))
    train = (m["split"] == "train").to_numpy()
    assert m.loc[train, "class_index"].nunique() == 1000 and len(np.unique(named[train])) == 997
    names = vocabulary.set_index("vocab_index")["name"]
    wnid = m["wnid"].to_numpy()
    merged = {}
    for label in np.unique(named[train]):
        wnids = sorted(set(wnid[train & (named == label)]))
        if len(wnids) > 1:
            merged[names[int(np.unique(gt[named == label])[0])]] = wnids
    assert merged == {
        "crane": ["n02012849", "n03126707"],  # the bird and the machine
        "cardigan": ["n02113186", "n02963159"],  # the corgi and the sweater
        "maillot": ["n03710637", "n03710721"],  # the tights and the swimsuit
    }
    # a perfect namer scores 100 on both accuracies (with 1000 wnid classes it could reach 99.7 only)
    first = pd.Series(m["class_index"].to_numpy()).groupby(named).transform("min").to_numpy()
    pred = pd.DataFrame(
        {"image_id": m["image_id"][train], "pred_vocab_index": gt[train], "pred_class_index": first[train]}
    )
    rows = stage_metrics(m, vocabulary, {"train": pred}).set_index("label_set")
    assert rows.loc["vocabulary", "top1"] == 100.0 and rows.loc["vocabulary", "cluster_acc"] == 100.0
    assert rows.loc["class_names", "top1"] == 100.0 and rows.loc["class_names", "cluster_acc"] == 100.0
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "config.yaml").read_text())
    assert config["datasets"]["imagenet1k"]["k"] == 997


@pytest.mark.data
def test_imagenet100_draw_and_manifest(imagenet_tree):
    idx = np.random.RandomState(0).choice(range(1000), 100, replace=False)
    assert list(idx[:10]) == [993, 859, 298, 553, 672, 971, 27, 231, 306, 706]
    all_wnids = sorted(p.name for p in (imagenet_tree / "train").iterdir())
    chosen = imagenet100_wnids(all_wnids)
    assert all_wnids[993] in chosen and all_wnids[706] in chosen and len(set(chosen)) == 100
    m = build_manifest("imagenet100", {"root": str(imagenet_tree)})
    _check_schema(m)
    assert len(m) == 200 and sorted(m["wnid"].unique()) == chosen
    assert m["class_index"].max() == 99


def test_imagenet100_needs_full_tree(tmp_path):
    for w in ("n01440764", "n01443537"):
        (tmp_path / "train" / w).mkdir(parents=True)
    (tmp_path / "val").mkdir()
    with pytest.raises(DatasetError, match="found 2 wnid folders.*full ImageNet-1K train tree"):
        build_manifest("imagenet100", {"root": str(tmp_path)})


def test_imagenet_missing_root_and_flat_val(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        build_manifest("imagenet1k", {"root": str(missing)})
    assert f"no folder {missing / 'train'}" in str(err.value) and "image-net.org" in str(err.value)
    (tmp_path / "train" / "n01440764").mkdir(parents=True)
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"x")
    with pytest.raises(DatasetError, match="not arranged into wnid folders"):
        build_manifest("imagenet1k", {"root": str(tmp_path)})


# ------------------------------------------------------------------------------------------ BREEDS


@pytest.mark.data
@pytest.mark.parametrize(
    ("kind", "n_super", "n_leaves"),
    [("living17", 17, 68), ("nonliving26", 26, 104), ("entity13", 13, 260), ("entity30", 30, 240)],
)
def test_breeds_class_counts(kind, n_super, n_leaves):
    drawn = breeds_leaf_wnids(kind, _need(BREEDS))
    assert len(drawn) == n_super
    assert len({w for ws in drawn.values() for w in ws}) == n_leaves


@pytest.mark.data
def test_living17_superclasses():
    from s3a.data.breeds import BreedsHierarchy

    hier = BreedsHierarchy(_need(BREEDS))
    names = [hier.node_name(n).split(",")[0] for n in breeds_leaf_wnids("living17", BREEDS)]
    assert names[:4] == ["salamander", "turtle", "lizard", "snake"] and names[-2:] == ["ape", "monkey"]


@pytest.mark.data
@pytest.mark.parametrize("kind", ["living17", "nonliving26", "entity13", "entity30"])
def test_breeds_manifest_on_sample_tree(kind, imagenet_tree):
    leaves = sorted({w for ws in breeds_leaf_wnids(kind, _need(BREEDS)).values() for w in ws})
    m = build_manifest(kind, {"root": str(imagenet_tree), "info_dir": str(BREEDS), "download": False})
    _check_schema(m)
    train = m[m["split"] == "train"]
    assert len(train) == len(leaves) and list(train["wnid"]) == leaves
    assert list(train["class_index"]) == list(range(len(leaves)))
    assert len(m) == 2 * len(leaves)


@pytest.mark.data
def test_breeds_missing_leaves(tmp_path):
    (tmp_path / "train" / "n01440764").mkdir(parents=True)
    (tmp_path / "val").mkdir()
    with pytest.raises(DatasetError, match=r"Living-17: 68 of 68 classes have no folder .*first: n0"):
        build_manifest("living17", {"root": str(tmp_path), "info_dir": str(_need(BREEDS))})


@pytest.mark.data
def test_breeds_download(tmp_path, monkeypatch):
    real = _need(BREEDS)
    urls: list[str] = []

    def fake_urlopen(url, timeout=60.0):
        urls.append(url)
        return io.BytesIO((real / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(breeds_mod, "_urlopen", fake_urlopen)
    info = breeds_mod.ensure_breeds_files(tmp_path / "info", download=True)
    assert urls == [f"{breeds_mod.BREEDS_URL}/{f}" for f in BREEDS_FILES]
    assert urls[0].startswith("https://raw.githubusercontent.com/MadryLab/BREEDS-Benchmarks/master/")
    for f in BREEDS_FILES:
        assert (info / f).read_bytes() == (real / f).read_bytes()
    assert sorted(p.name for p in info.iterdir()) == sorted(BREEDS_FILES)  # no temp files left
    assert len({w for ws in breeds_leaf_wnids("entity30", info).values() for w in ws}) == 240


def test_breeds_download_failure(tmp_path, monkeypatch):
    def failing(url, timeout=60.0):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(breeds_mod, "_urlopen", failing)
    info = tmp_path / "info"
    with pytest.raises(DatasetError) as err:
        breeds_mod.ensure_breeds_files(info, download=True)
    msg = str(err.value)
    assert "class_hierarchy.txt" in msg and f"{breeds_mod.BREEDS_URL}/class_hierarchy.txt" in msg
    assert str(info) in msg
    assert list(info.iterdir()) == []
    with pytest.raises(DatasetError, match="no file .*class_hierarchy.txt.*download: true"):
        breeds_mod.ensure_breeds_files(info, download=False)


# ------------------------------------------------------------------------------------------ Stanford Dogs


def _write_dogs_list(path: Path, files: list[str], labels: list[int]) -> None:
    from scipy.io import savemat

    cell = np.empty((len(files), 1), dtype=object)
    for i, f in enumerate(files):
        cell[i, 0] = np.array([f])
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"file_list": cell, "labels": np.array(labels, dtype=np.uint8).reshape(-1, 1)})


@pytest.fixture(scope="module")
def dogs_root(tmp_path_factory) -> Path:
    sample = _need(SAMPLE)
    root = tmp_path_factory.mktemp("dogs")
    photos = [p for p in sorted(sample.glob("n*.JPEG")) if "n02085620" <= p.name[:9] <= "n02113978"]
    train, test, train_labels, test_labels = [], [], [], []
    for label, photo in enumerate(photos, start=1):
        wnid, name = photo.stem.split("_", 1)
        folder = f"{wnid}-{name.title()}"
        (root / "Images" / folder).mkdir(parents=True)
        for k in range(3):
            (root / "Images" / folder / f"{wnid}_{k}.jpg").symlink_to(photo)
        train += [f"{folder}/{wnid}_0.jpg", f"{folder}/{wnid}_1.jpg"]
        train_labels += [label, label]
        test.append(f"{folder}/{wnid}_2.jpg")
        test_labels.append(label)
    _write_dogs_list(root / "lists" / "train_list.mat", train, train_labels)
    _write_dogs_list(root / "lists" / "test_list.mat", test, test_labels)
    return root


@pytest.mark.data
def test_stanford_dogs(dogs_root):
    m = build_manifest("stanford_dogs", {"root": str(dogs_root)})
    _check_schema(m)
    # the sample holds the 118 ImageNet-1K dog classes in n02085620..n02113978 (one photo each)
    assert m["class_index"].nunique() == 118
    assert (m["split"] == "train").sum() == 236 and (m["split"] == "test").sum() == 118
    first = m.iloc[0]
    assert first["wnid"] == "n02085620" and first["class_name"] == "chihuahua"
    assert m.loc[m["wnid"] == "n02101006", "class_name"].iloc[0] == "gordon_setter"
    assert m.loc[m["wnid"] == "n02113978", "class_index"].iloc[0] == 117


def test_stanford_dogs_errors(tmp_path):
    with pytest.raises(DatasetError, match=f"no folder {tmp_path / 'Images'}"):
        build_manifest("stanford_dogs", {"root": str(tmp_path)})
    (tmp_path / "Images" / "n02085620-Chihuahua").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no file .*train_list.mat.*ImageNetDogs"):
        build_manifest("stanford_dogs", {"root": str(tmp_path)})
    _write_dogs_list(tmp_path / "lists" / "train_list.mat", ["n02085620-Chihuahua/a.jpg"], [1])
    _write_dogs_list(tmp_path / "lists" / "test_list.mat", ["n02085620-Chihuahua/b.jpg"], [1])
    with pytest.raises(DatasetError, match="2 listed images are missing"):
        build_manifest("stanford_dogs", {"root": str(tmp_path)})


# ------------------------------------------------------------------------------------------ Caltech-101


def _touch_images(folder: Path, n: int, ext: str = ".jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"image_{i + 1:04d}{ext}").write_bytes(b"\xff\xd8")


def test_caltech101(tmp_path):
    cats = tmp_path / "101_ObjectCategories"
    _touch_images(cats / "accordion", 10)
    _touch_images(cats / "Faces_easy", 31)
    _touch_images(cats / "Motorbikes", 5)
    _touch_images(cats / "BACKGROUND_Google", 7)
    _touch_images(cats / "yin_yang", 7)
    (cats / "accordion" / "notes.txt").write_text("not an image")
    m = build_manifest("caltech101", {"root": str(tmp_path)})
    _check_schema(m)
    counts = m.groupby(["class_name", "split"]).size().to_dict()
    assert counts == {
        ("accordion", "train"): 8, ("accordion", "test"): 2,
        ("faces_easy", "train"): 25, ("faces_easy", "test"): 6,
        ("motorbikes", "train"): 4, ("motorbikes", "test"): 1,
    }  # fmt: skip
    names = m.drop_duplicates("class_index")["class_name"].tolist()
    assert names == ["accordion", "faces_easy", "motorbikes"]
    assert m["wnid"].isna().all() and not m["path"].str.endswith(".txt").any()
    # the split is the documented rule: RandomState(seed).permutation of the sorted files, first 80% train
    files = sorted(str(p) for p in (cats / "accordion").glob("*.jpg"))
    perm = np.random.RandomState(0).permutation(10)
    expected_test = sorted(files[i] for i in perm[8:])
    assert sorted(m[(m["class_name"] == "accordion") & (m["split"] == "test")]["path"]) == expected_test
    # root may point at 101_ObjectCategories itself; another seed changes the split
    direct = build_manifest("caltech101", {"root": str(cats)})
    assert direct.equals(m)
    other = build_manifest("caltech101", {"root": str(cats), "seed": 1})
    assert set(other.loc[other["split"] == "test", "path"]) != set(m.loc[m["split"] == "test", "path"])


def test_caltech101_missing(tmp_path):
    with pytest.raises(DatasetError, match=f"Caltech-101: no folder {tmp_path / '101_ObjectCategories'}"):
        build_manifest("caltech101", {"root": str(tmp_path)})


# ------------------------------------------------------------------------------------------ CIFAR-100


def _fake_cifar100(root: Path, names: list[str], n_train: int, n_test: int) -> dict[str, np.ndarray]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
        labels = [i % len(names) for i in range(n)]
        with open(folder / split, "wb") as fh:
            pickle.dump({"data": data, "fine_labels": labels, "coarse_labels": [0] * n}, fh)
        arrays[split] = data
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": names, "coarse_label_names": ["x"]}, fh)
    return arrays


def test_cifar100_export(tmp_path):
    names = ["apple", "aquarium_fish", "baby"]
    arrays = _fake_cifar100(tmp_path, names, n_train=7, n_test=4)
    m = build_manifest("cifar100", {"root": str(tmp_path)})
    _check_schema(m)
    assert len(m) == 11 and (m["split"] == "train").sum() == 7
    assert m.drop_duplicates("class_index")["class_name"].tolist() == names
    path = tmp_path / "cifar100-images" / "train" / "aquarium_fish" / "00004.png"
    row = m[m["path"] == str(path)].iloc[0]
    assert row["class_index"] == 1 and row["wnid"] is None
    expected = arrays["train"][4].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(Image.open(path)), expected)
    mtime = path.stat().st_mtime_ns
    again = build_manifest("cifar100", {"root": str(tmp_path)})
    assert again.equals(m) and path.stat().st_mtime_ns == mtime  # existing PNGs are kept
    assert not list((tmp_path / "cifar100-images").rglob("*.tmp"))


def test_cifar100_missing_and_download_failure(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="no file .*cifar-100-python.*download: true"):
        build_manifest("cifar100", {"root": str(tmp_path), "download": False})
    import torchvision.datasets.cifar as tv_cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(DatasetError, match="CIFAR-100: download into .* failed .*network unreachable"):
        build_manifest("cifar100", {"root": str(tmp_path), "download": True})


# ------------------------------------------------------------------------------------------ Oxford Pet


def test_oxford_pet(tmp_path, monkeypatch):
    base = tmp_path / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    trainval = ["Abyssinian_1 1 1 1", "Abyssinian_2 1 1 1", "american_bulldog_10 2 2 1", "boxer_3 9 2 5"]
    test = ["#comment", "american_bulldog_11 2 2 1", "Bengal_4 6 1 3"]
    (base / "annotations" / "trainval.txt").write_text("\n".join(trainval) + "\n")
    (base / "annotations" / "test.txt").write_text("\n".join(test) + "\n")
    for line in trainval + test[1:]:
        (base / "images" / f"{line.split()[0]}.jpg").write_bytes(b"\xff\xd8")
    (base / "images" / "stray.mat").write_bytes(b"")
    m = build_manifest("oxford_pet", {"root": str(tmp_path)})
    _check_schema(m)
    assert (m["split"] == "train").sum() == 4 and (m["split"] == "test").sum() == 2
    classes = m.drop_duplicates("class_index").sort_values("class_index")["class_name"].tolist()
    assert classes == ["abyssinian", "american bulldog", "bengal", "boxer"]

    import torchvision.datasets.oxford_iiit_pet as tv_pet

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_pet, "download_and_extract_archive", offline)
    empty = tmp_path / "empty"
    with pytest.raises(DatasetError, match="Oxford-IIIT Pet: download into .* failed"):
        build_manifest("oxford_pet", {"root": str(empty), "download": True})
    with pytest.raises(DatasetError, match=f"no folder {empty / 'oxford-iiit-pet' / 'images'}"):
        build_manifest("oxford_pet", {"root": str(empty)})


# ------------------------------------------------------------------------------------------ imagefolder


@pytest.mark.data
def test_imagefolder_on_cifar10():
    m = build_manifest("imagefolder", {"root": str(_need(CIFAR10))})
    _check_schema(m)
    assert len(m) == 2000 and (m["split"] == "train").all()
    names = m.drop_duplicates("class_index")["class_name"].tolist()
    assert names == sorted(p.name for p in CIFAR10.iterdir())
    assert m["wnid"].isna().all()
    split = build_manifest("imagefolder", {"root": str(CIFAR10), "test_fraction": 0.25, "seed": 3})
    assert split.groupby("class_name")["split"].apply(lambda s: (s == "test").sum()).eq(50).all()


def test_imagefolder_layouts(tmp_path):
    _touch_images(tmp_path / "train" / "Red Fox", 3, ".PNG")
    _touch_images(tmp_path / "train" / "n01440764", 2)
    _touch_images(tmp_path / "test" / "Red Fox", 1, ".webp")
    (tmp_path / "train" / "Red Fox" / "readme.md").write_text("x")
    m = build_manifest("imagefolder", {"root": str(tmp_path)})
    _check_schema(m)
    assert (m["split"] == "train").sum() == 5 and (m["split"] == "test").sum() == 1
    by_class = m.drop_duplicates("class_index").set_index("class_index")
    assert by_class.loc[0, "wnid"] == "n01440764" and by_class.loc[0, "class_name"] == "tench"
    assert by_class.loc[1, "class_name"] == "red_fox" and by_class.loc[1, "wnid"] is None
    with pytest.raises(DatasetError, match=f"imagefolder: no folder {tmp_path / 'missing'}"):
        build_manifest("imagefolder", {"root": str(tmp_path / "missing")})
    _touch_images(tmp_path / "train" / "red fox", 1)
    if (tmp_path / "train" / "red fox") != (tmp_path / "train" / "Red Fox"):
        with pytest.raises(DatasetError, match="give the same class"):
            build_manifest("imagefolder", {"root": str(tmp_path)})


# ------------------------------------------------------------------------------------------ generated


def test_generated_default_dataset(tmp_path):
    m = build_manifest("generated", {"root": str(tmp_path / "g")})
    _check_schema(m)
    assert m.drop_duplicates("class_index")["class_name"].tolist() == sorted(DEFAULT_CLASSES)
    assert (m.groupby(["class_name", "split"]).size().unstack()[["train", "test"]] == [30, 10]).all().all()
    with Image.open(m.loc[0, "path"]) as img:
        assert img.size == (96, 96) and img.mode == "RGB"
    from s3a.vocab import build_vocabulary

    assert set(DEFAULT_CLASSES) <= set(build_vocabulary()["name"])


def test_generated_is_deterministic_and_cached(tmp_path):
    params = {"classes": ["star", "ring"], "images_per_class": 4, "image_size": 48, "seed": 5}
    a = build_manifest("generated", {"root": str(tmp_path / "a"), **params})
    b = build_manifest("generated", {"root": str(tmp_path / "b"), **params})
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jpg"))
    assert len(files) == 8
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert [Path(p).name for p in a["path"]] == [Path(p).name for p in b["path"]]
    star = tmp_path / "a" / "star" / "0000.jpg"
    mtime = star.stat().st_mtime_ns
    build_manifest("generated", {"root": str(tmp_path / "a"), **params})
    assert star.stat().st_mtime_ns == mtime  # complete: nothing redrawn
    other = build_manifest("generated", {"root": str(tmp_path / "c"), **{**params, "seed": 6}})
    assert (tmp_path / "c" / "star" / "0000.jpg").read_bytes() != star.read_bytes()
    assert len(other) == 8
    with pytest.raises(DatasetError, match="unknown shape.*'hexagon'"):
        build_manifest("generated", {"root": str(tmp_path / "d"), "classes": ["hexagon"]})
