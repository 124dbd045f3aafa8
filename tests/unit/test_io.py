import os
import stat

import numpy as np
import pandas as pd
import pytest

from s3a.io import (
    atomic_path,
    current_umask,
    new_file_mode,
    read_embeddings,
    read_table,
    write_embeddings,
    write_table,
)


def test_embeddings_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.array([7, 3, 11])
    emb = rng.normal(size=(3, 5)).astype(np.float32)
    write_embeddings(ids, emb, tmp_path / "e.parquet")
    got_ids, got = read_embeddings(tmp_path / "e.parquet")
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got, emb)
    assert got.dtype == np.float32 and got.shape == (3, 5)


def test_embeddings_shape_mismatch_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="expected ids"):
        write_embeddings(np.arange(2), np.zeros((3, 4)), tmp_path / "e.parquet")


def test_empty_embeddings_round_trip(tmp_path):
    write_embeddings(np.zeros(0, np.int64), np.zeros((0, 4), np.float32), tmp_path / "e.parquet")
    ids, emb = read_embeddings(tmp_path / "e.parquet")
    assert ids.shape == (0,) and emb.shape == (0, 4)


def test_write_table_keeps_list_columns(tmp_path):
    df = pd.DataFrame({"name": ["crane", "dog"], "synset_ids": [["n1", "n2"], ["n3"]]})
    write_table(df, tmp_path / "sub" / "t.parquet")
    back = read_table(tmp_path / "sub" / "t.parquet")
    assert list(back.synset_ids.map(list)) == [["n1", "n2"], ["n3"]]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    """Run the test under a given umask (restored afterwards)."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_written_files_get_the_umask_mode(tmp_path, umask):
    """A lab sharing a results tree reads each other's outputs: no mkstemp 0o600 leaks through."""
    assert current_umask() == umask
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    with atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("x")
    for name in ("t.parquet", "x.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
    assert new_file_mode(directory=True) == 0o777 & ~umask


def test_gallery_folder_gets_the_umask_mode(tmp_path, umask):
    from test_gallery import _gallery_inputs

    from s3a.gallery import GalleryParams, gallery_cards, write_gallery

    inputs = _gallery_inputs(tmp_path)
    params = GalleryParams(typical=1, random=0, thumbnail_px=32)
    cards = gallery_cards(*inputs, params, labelled=False)
    out = tmp_path / "gallery"
    write_gallery(cards, dict(zip(inputs[0].image_id, inputs[0].path, strict=True)), out, params, title="t")
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((out / "index.html").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(next((out / "thumbs").glob("*.jpg")).stat().st_mode) == 0o666 & ~umask
