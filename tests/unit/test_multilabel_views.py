"""Tile grid and tile embedding (MULTILABEL_SPEC 4, 11.1) with the tiny random CLIP model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import s3a.multilabel.views.tiles as tiles_mod
from s3a.multilabel.views.tables import read_tiles, tiles_table
from s3a.multilabel.views.tiles import TileParams, encode_tiles, tile_boxes


def test_tile_boxes_spec_example():
    boxes = tile_boxes(500, 375, 3)
    assert len(boxes) == 9
    assert boxes[0] == (0, 0, 166, 125) and boxes[8] == (332, 250, 498, 375)
    assert boxes[1] == (166, 0, 332, 125) and boxes[3] == (0, 125, 166, 250)  # row-major
    assert tile_boxes(500, 375, 1) == [(0, 0, 500, 375)]
    with pytest.raises(ValueError, match="photo.jpg"):
        tile_boxes(2, 375, 3, "photo.jpg")


def _images(tmp_path, n=3):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, size=(60 + 7 * i, 90, 3), dtype=np.uint8)
        p = tmp_path / f"im{i}.jpg"
        Image.fromarray(arr).save(p, quality=95)
        paths.append(str(p))
    return paths


def test_encode_tiles_matches_per_crop_transform(tiny_clip, tmp_path):
    paths = _images(tmp_path)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (2, 2)).save(tiny)
    params = TileParams(grid=3, batch_size=18, num_workers=0)
    out = encode_tiles(tiny_clip.model, tiny_clip.preprocess, [*paths, str(tiny)], params, progress=False)
    assert out.index.tolist() == [0, 1, 2] and len(out.failed) == 1 and "too small" in out.failed[0][1]
    assert out.embeddings.shape[:2] == (3, 9) and out.boxes.shape == (3, 9, 4)
    np.testing.assert_allclose(np.linalg.norm(out.embeddings, axis=-1), 1.0, atol=1e-5)
    # the reference: each crop through the model's own PIL evaluation transform
    with Image.open(paths[1]) as img:
        img = img.convert("RGB")
        boxes = tile_boxes(img.width, img.height, 3)
        ref_in = torch.stack([tiny_clip.preprocess(img.crop(b)) for b in boxes])
    assert out.boxes[1].tolist() == [list(b) for b in boxes]
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(tiny_clip.model.encode_image(ref_in).float(), dim=-1).numpy()
    cos = (ref * out.embeddings[1]).sum(axis=1)
    assert cos.mean() >= 0.99, cos
    squash = encode_tiles(
        tiny_clip.model, tiny_clip.preprocess, paths, TileParams(fit="squash", num_workers=0), progress=False
    )
    assert squash.embeddings.shape == out.embeddings.shape


def test_one_decode_per_image(tiny_clip, tmp_path, monkeypatch):
    paths = _images(tmp_path, 2)
    opened = []
    real_open = Image.open

    def counting_open(fp, *a, **k):
        opened.append(str(fp))
        return real_open(fp, *a, **k)

    monkeypatch.setattr(tiles_mod.Image, "open", counting_open)
    encode_tiles(tiny_clip.model, tiny_clip.preprocess, paths, TileParams(num_workers=0), progress=False)
    assert sorted(opened) == sorted(paths)


def test_tiles_table_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(4, 9, 8)).astype(np.float32)
    boxes = rng.integers(0, 100, size=(4, 9, 4)).astype(np.int32)
    ids = np.array([7, 3, 5, 1])
    table = tiles_table(ids, boxes, emb)
    assert table.column("image_id").to_pylist()[:10] == [1] * 9 + [3]
    assert table.column("tile").to_pylist()[:10] == list(range(9)) + [0]
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "t.parquet")
    got_ids, got = read_tiles(tmp_path / "t.parquet")
    order = np.argsort(ids)
    np.testing.assert_array_equal(got_ids, ids[order])
    np.testing.assert_array_equal(got, emb[order])
    half = tiles_table(ids, boxes, emb, dtype="float16")
    assert str(half.schema.field("embedding").type.value_type) == "halffloat"


def test_worker_processes_give_the_same_tiles(tiny_clip, tmp_path):
    paths = _images(tmp_path, 3)
    one = encode_tiles(
        tiny_clip.model, tiny_clip.preprocess, paths, TileParams(num_workers=0), progress=False
    )
    two = encode_tiles(
        tiny_clip.model, tiny_clip.preprocess, paths, TileParams(num_workers=1, batch_size=9), progress=False
    )
    np.testing.assert_array_equal(one.index, two.index)
    np.testing.assert_allclose(one.embeddings, two.embeddings, atol=1e-5)
