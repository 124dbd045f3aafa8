import numpy as np
import pandas as pd
import pytest

from s3a.io import atomic_path, read_embeddings, read_table, write_embeddings, write_table


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
