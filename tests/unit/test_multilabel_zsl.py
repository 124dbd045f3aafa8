"""Supervision of the CLIP-Decoder head: the ZSL/GZSL split, targets and protocol metrics."""

from __future__ import annotations

import numpy as np
import pytest

from s3a.multilabel.aggregate import PseudoParams, ViewScores, aggregate, pseudo_targets, scores_table
from s3a.multilabel.data.tables import ImageRecord, assemble
from s3a.multilabel.decoder.zsl import evaluate_zsl, gt_targets, zsl_split
from s3a.multilabel.metrics import EVAL_COLUMNS, SUBSETS, evaluate

NAMES = ["a", "b", "c", "d", "e"]  # seen: a, b, c; unseen: d, e
SEEN = [True, True, True, False, False]


@pytest.fixture
def zsl_data():
    """Train: 0 {a}, 1 {d} (unseen only: dropped from training), 2 {b, e}, 3 {} (no label);
    test: 4 {a}, 5 {d}, 6 {c, e}, 7 {} (no label)."""
    nan = float("nan")
    objs = {0: (0,), 1: (3,), 2: (1, 4), 3: (), 4: (0,), 5: (3,), 6: (2, 4), 7: ()}
    records = [
        ImageRecord(f"/x/{i}.jpg", "train" if i < 4 else "test", tuple((c, False, nan) for c in objs[i]))
        for i in range(8)
    ]
    return assemble("zsl_fixture", records, NAMES, seen=SEEN)


def test_zsl_split_filters_images_and_labels(zsl_data):
    split = zsl_split(zsl_data.manifest, zsl_data.labels, zsl_data.label_set)
    assert split.seen.tolist() == [0, 1, 2] and split.unseen.tolist() == [3, 4]
    assert split.train_ids.tolist() == [0, 2]
    assert split.zsl_test_ids.tolist() == [5, 6]
    assert split.gzsl_test_ids.tolist() == [4, 5, 6]
    y = gt_targets(zsl_data.labels, split.train_ids, split.seen, len(NAMES))
    np.testing.assert_array_equal(y, [[1, 0, 0], [0, 1, 0]])
    assert y.dtype == np.float32


def test_zsl_split_needs_unseen_labels(zsl_data):
    all_seen = zsl_data.label_set.assign(seen=True)
    with pytest.raises(ValueError, match="label_space: all"):
        zsl_split(zsl_data.manifest, zsl_data.labels, all_seen)


def test_evaluate_zsl_and_gzsl(zsl_data):
    ids = zsl_data.manifest["image_id"].to_numpy()[4:]  # the test images 4..7
    rng = np.random.default_rng(0)
    scores = rng.random((4, 5)).astype(np.float32)
    zsl = evaluate_zsl(ids, scores, zsl_data.labels, zsl_data.label_set, "zsl", stage="mldecoder")
    assert list(zsl.columns) == list(EVAL_COLUMNS)
    row = zsl.iloc[0]
    assert (row["subset"], row["n_images"], row["n_labels"], row["stage"]) == ("unseen", 2, 2, "mldecoder")
    # by hand: images 5 {d}, 6 {e} over the unseen columns d, e
    expected = evaluate(np.array([[1, 0], [0, 1]], bool), scores[1:3, 3:])[0]
    assert row["map"] == pytest.approx(expected["map"])
    # the same row from scores over the unseen labels only
    only = evaluate_zsl(ids, scores[:, 3:], zsl_data.labels, zsl_data.label_set, "zsl")
    assert only.iloc[0]["map"] == pytest.approx(row["map"])
    gz = evaluate_zsl(ids, scores, zsl_data.labels, zsl_data.label_set, "gzsl").iloc[0]
    assert (gz["subset"], gz["n_images"], gz["n_labels"]) == ("gzsl", 3, 5)
    assert {row["subset"], gz["subset"]} <= set(SUBSETS)
    # the GZSL row is metrics.evaluate's gzsl subset on all test images (image 7 has no label)
    y = np.zeros((4, 5), bool)
    y[[0, 1, 2, 2], [0, 3, 2, 4]] = True
    direct = evaluate(y, scores, subsets=("gzsl",))[0]
    assert direct["subset"] == "gzsl" and direct["n_images"] == 3
    assert gz["map"] == pytest.approx(direct["map"]) and gz["p_at_3"] == pytest.approx(direct["p_at_3"])
    perfect = np.zeros((4, 5), np.float32)
    perfect[[0, 1, 2, 2], [0, 3, 2, 4]] = 1
    best = evaluate_zsl(ids, perfect, zsl_data.labels, zsl_data.label_set, "gzsl").iloc[0]
    assert best["map"] == pytest.approx(100) and best["r_at_3"] == pytest.approx(100)
    with pytest.raises(ValueError, match="zsl scores"):
        evaluate_zsl(ids, scores[:, :4], zsl_data.labels, zsl_data.label_set, "zsl")


def test_pseudo_targets_follow_ids_and_params():
    rng = np.random.default_rng(1)
    v = ViewScores(*(rng.random((4, 3)).astype(np.float32) for _ in range(4)))
    table = scores_table(np.array([10, 11, 12, 13]), v)
    _, final = aggregate(v)
    np.testing.assert_allclose(pseudo_targets(table, np.array([12, 10])), final[[2, 0]])
    p = PseudoParams(local_reduce="mean", lam=1.0)
    np.testing.assert_allclose(pseudo_targets(table, np.array([13]), p), aggregate(v, p)[1][[3]])
    with pytest.raises(ValueError, match="no pseudo-labels"):
        pseudo_targets(table, np.array([99]))
