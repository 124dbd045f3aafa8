"""The unlabeled `folder` dataset kind: recursive listing, hidden files, links, no ground truth."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from s3a.data import UNLABELED_KINDS, DatasetError, build_manifest
from s3a.data.folders import UNLABELED, walk_images


def _image(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def test_flat_folder_is_one_unlabeled_train_split(tmp_path):
    for i in range(3):
        _image(tmp_path / f"img{i}.jpg")
    m = build_manifest("folder", {"root": str(tmp_path)})
    assert len(m) == 3 and set(m.split) == {"train"}
    assert set(m.class_name) == {UNLABELED} and set(m.class_index) == {0}
    assert m.wnid.isna().all()
    assert "folder" in UNLABELED_KINDS


def test_nested_hidden_extensions_and_links(tmp_path):
    photos = tmp_path / "photos"
    _image(photos / "a.JPG")
    _image(photos / "2024" / "summer" / "b.png")
    _image(photos / "2024" / "c.webp")
    _image(photos / ".hidden.jpg")
    _image(photos / ".thumbnails" / "d.jpg")
    (photos / "notes.txt").write_text("not an image")
    outside = _image(tmp_path / "elsewhere" / "e.jpeg").parent
    os.symlink(outside, photos / "linked")  # a linked folder is followed
    os.symlink(photos, photos / "2024" / "loop")  # a cycle is listed once
    os.symlink(tmp_path / "missing.jpg", photos / "broken.jpg")  # a broken link is skipped
    found = [os.path.relpath(p, photos) for p in walk_images(photos)]
    assert found == sorted(["a.JPG", "2024/summer/b.png", "2024/c.webp", "linked/e.jpeg"])
    m = build_manifest("folder", {"root": str(photos)})
    assert len(m) == 4 and m.path.is_unique


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no folder"):
        build_manifest("folder", {"root": str(tmp_path / "nope")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        build_manifest("folder", {"root": str(tmp_path / "empty")})


def test_imagefolder_warns_about_empty_classes_unknown_names_and_empty_splits(tmp_path, caplog):
    _image(tmp_path / "golden_retriever" / "a.jpg")
    _image(tmp_path / "my_cat_felix" / "b.jpg")
    (tmp_path / "empty_class").mkdir()
    with caplog.at_level("WARNING"):
        m = build_manifest("imagefolder", {"root": str(tmp_path)})
    assert sorted(m.class_name.unique()) == ["golden_retriever", "my_cat_felix"]
    text = caplog.text
    assert f"class folder {tmp_path / 'empty_class'} holds no images" in text
    assert "1 of 2 class folder names are not vocabulary names (my_cat_felix)" in text
    assert "the test split is empty" in text
    caplog.clear()
    with caplog.at_level("WARNING"):
        build_manifest("folder", {"root": str(tmp_path)})
    assert "split is empty" not in caplog.text  # an unlabeled folder has only train, by design


def test_a_link_to_the_root_a_fifo_and_a_non_utf8_name_are_skipped_and_said(tmp_path, caplog):
    """The listing ends at once: a link to `/` (or to a folder holding the photos) is not followed, a
    FIFO named like a photo is never opened, a name that is not UTF-8 cannot go into the tables."""
    import time

    photos = tmp_path / "photos"
    _image(photos / "a.jpg")
    _image(photos / "sub" / "b.jpg")
    os.symlink("/", photos / "root")
    os.symlink("..", photos / "sub" / "up")
    os.mkfifo(photos / "pipe.jpg")
    _image(photos / os.fsdecode(b"bad\xff.jpg"))
    start = time.monotonic()
    with caplog.at_level("WARNING"):
        found = [os.path.relpath(p, photos) for p in walk_images(photos)]
    assert time.monotonic() - start < 5
    assert found == ["a.jpg", "sub/b.jpg"]
    assert (
        f"folder {photos}: skipped 2 links to a folder holding the photos, 1 not regular files, "
        "1 names not in UTF-8" in caplog.text
    )
