"""Multi-label metrics (MULTILABEL_SPEC 9, 11.1) against scikit-learn and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, multilabel_confusion_matrix

from s3a.multilabel.metrics import (
    EVAL_COLUMNS,
    SUBSETS,
    EvalParams,
    average_precisions,
    evaluate,
    mean_average_precision,
    subset_mask,
    threshold_metrics,
    topk_metrics,
)


def _random(seed=0, n=60, c=7):
    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < 0.3
    y[0] = True  # every label has a positive
    return y, rng.random((n, c))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_equals_sklearn_per_column_mean(seed):
    y, s = _random(seed)
    m, n_no = mean_average_precision(y, s)
    ref = np.mean([average_precision_score(y[:, c], s[:, c]) for c in range(y.shape[1])]) * 100
    assert n_no == 0 and abs(m - ref) < 1e-9
    assert abs(m - 100 * average_precision_score(y, s, average="macro")) < 1e-9


def test_label_without_positives_is_excluded_and_counted():
    y, s = _random(3)
    y[:, 2] = False
    m, n_no = mean_average_precision(y, s)
    keep = [c for c in range(y.shape[1]) if c != 2]
    ref = np.mean([average_precision_score(y[:, c], s[:, c]) for c in keep]) * 100
    assert n_no == 1 and abs(m - ref) < 1e-9
    assert np.isnan(average_precisions(y, s)[2])


def test_masked_entries_drop_out():
    y, s = _random(4)
    mask = np.zeros_like(y)
    mask[:10, 1] = True
    ap = average_precisions(y, s, mask)
    assert abs(ap[1] - average_precision_score(y[10:, 1], s[10:, 1])) < 1e-12
    assert abs(ap[0] - average_precision_score(y[:, 0], s[:, 0])) < 1e-12


def test_ties_are_grouped():
    y = np.array([[1], [0], [1], [0]], bool)
    s = np.array([[0.5], [0.5], [0.5], [0.1]])
    assert abs(mean_average_precision(y, s)[0] - 100 * 2 / 3) < 1e-9


def test_threshold_metrics_by_hand_and_cf1_is_not_mean_f1():
    y = np.array([[1, 0], [1, 1], [0, 1], [1, 0]], bool)
    s = np.array([[0.9, 0.6], [0.2, 0.7], [0.6, 0.1], [0.8, 0.4]])
    got = threshold_metrics(y, s, 0.5)
    # label 0: pred {0,2,3}, TP 2 FP 1 FN 1; label 1: pred {0,1}, TP 1 FP 1 FN 1
    cp, cr = (2 / 3 + 1 / 2) / 2, (2 / 3 + 1 / 2) / 2
    assert abs(got["c_prec"] - 100 * cp) < 1e-9 and abs(got["c_rec"] - 100 * cr) < 1e-9
    assert abs(got["o_prec"] - 100 * 3 / 5) < 1e-9 and abs(got["o_rec"] - 100 * 3 / 5) < 1e-9
    # counts agree with scikit-learn's per-label confusion matrices
    mcm = multilabel_confusion_matrix(y, s >= 0.5)
    assert mcm[:, 1, 1].tolist() == [2, 1] and mcm[:, 0, 1].tolist() == [1, 1]
    # CF1 is the harmonic mean of CP and CR, which differs from the mean per-label F1 here
    # label 0: P 1, R 1/4; label 1: P 1/4, R 1 -> CP = CR = CF1 = 62.5, mean per-label F1 = 40
    y2 = np.array([[1, 1], [1, 0], [1, 0], [1, 0]], bool)
    s2 = np.array([[0.9, 0.9], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]])
    cf1 = threshold_metrics(y2, s2, 0.5)["c_f1"]
    macro = 100 * f1_score(y2, s2 >= 0.5, average="macro", zero_division=0)
    assert abs(cf1 - 62.5) < 1e-9 and abs(macro - 40.0) < 1e-9


def test_topk_by_hand_three_images():
    y = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [1, 0, 0, 1, 1]], bool)
    s = np.array([[0.9, 0.1, 0.8, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.6, 0.1, 0.7, 0.0]])
    got = topk_metrics(y, s, (3,))
    # top-3: img0 {0,2,3} TP 1; img1 {4,3,2} TP 1; img2 {3,1,0} TP 2 -> 4 TP, 9 predicted, 6 positives
    assert abs(got["p_at_3"] - 100 * 4 / 9) < 1e-9 and abs(got["r_at_3"] - 100 * 4 / 6) < 1e-9
    p, r = 4 / 9, 4 / 6
    assert abs(got["f1_at_3"] - 100 * 2 * p * r / (p + r)) < 1e-9


def test_small_subset_masks_large_positives_and_evaluate_rows():
    y = np.array([[1, 0], [1, 1], [0, 1]], bool)
    area = np.array([[500, np.nan], [5000, 100], [np.nan, 2000]], np.float32)
    mask = subset_mask("small", y, None, area, EvalParams(small_area_px=1024))
    assert mask.tolist() == [[False, False], [True, False], [False, True]]
    s = np.array([[0.9, 0.2], [0.1, 0.8], [0.3, 0.7]])
    diff = np.zeros_like(y)
    rows = evaluate(
        y,
        s,
        diff,
        area,
        seen=np.array([True, False]),
        subsets=("all", "small", "seen", "unseen"),
        dataset="d",
        model="m",
        stage="zs_final",
        split="test",
    )
    assert [r["subset"] for r in rows] == ["all", "small", "seen", "unseen"]
    assert all(set(EVAL_COLUMNS) == set(r) for r in rows)
    assert rows[2]["n_labels"] == 1 and rows[2]["n_images"] == 2  # images with a seen positive
    assert rows[3]["n_images"] == 2
    assert 0 <= rows[0]["map"] <= 100
    soft = evaluate(y, s, thresholded=False)[0]
    assert np.isnan(soft["c_prec"]) and not np.isnan(soft["p_at_3"])


def test_softmax_scores_never_compute_threshold_metrics(monkeypatch):
    """A softmax stage skips CP..OF1 (NaN) instead of computing and then overwriting them."""
    import s3a.multilabel.metrics as metrics

    def refuse(*args, **kwargs):
        raise AssertionError("threshold_metrics called for softmax scores")

    monkeypatch.setattr(metrics, "threshold_metrics", refuse)
    y = np.array([[1, 0], [0, 1], [1, 1]], bool)
    row = metrics.evaluate(y, np.full(y.shape, 0.5), thresholded=False)[0]
    assert all(np.isnan(row[c]) for c in metrics.THRESHOLD_COLUMNS)
    assert not np.isnan(row["p_at_3"]) and set(metrics.THRESHOLD_COLUMNS) < set(metrics.EVAL_COLUMNS)
    with pytest.raises(AssertionError, match="softmax"):
        metrics.evaluate(y, np.full(y.shape, 0.5), thresholded=True)


def test_every_subset_name_is_evaluated_and_unknown_names_are_refused():
    """SUBSETS is the one list of subset names: evaluate accepts each, rows carry the name, and
    ``gzsl`` keeps every label and the images with a positive (the GZSL protocol)."""
    y = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0], [1, 1, 0]], bool)
    s = np.random.default_rng(0).random(y.shape)
    area = np.full(y.shape, 100.0, np.float32)
    seen = np.array([True, True, False])
    rows = evaluate(y, s, None, area, seen, SUBSETS)
    assert [r["subset"] for r in rows] == list(SUBSETS) == ["all", "seen", "unseen", "gzsl", "small"]
    by = {r["subset"]: r for r in rows}
    assert (by["all"]["n_images"], by["all"]["n_labels"]) == (4, 3)
    assert (by["gzsl"]["n_images"], by["gzsl"]["n_labels"]) == (3, 3)  # image 2 has no label
    assert (by["seen"]["n_images"], by["unseen"]["n_images"]) == (2, 1)
    # a positive-free image changes no AP, but it counts in the top-K precision of ``all``
    assert by["gzsl"]["map"] == pytest.approx(by["all"]["map"])
    assert by["gzsl"]["p_at_3"] == pytest.approx(by["all"]["p_at_3"] * 4 / 3)
    with pytest.raises(ValueError, match="unknown subset 'zsl'"):
        evaluate(y, s, subsets=("zsl",))


def test_shape_errors():
    with pytest.raises(ValueError, match="shapes"):
        mean_average_precision(np.zeros((3, 2), bool), np.zeros((3, 3)))


def test_evaluate_stage_masks_voc_difficult():
    import pandas as pd

    from s3a.multilabel.metrics import evaluate_stage

    labels = pd.DataFrame(
        {
            "image_id": np.array([0, 1, 2, 3], np.int64),
            "label_index": np.array([0, 0, 1, 1], np.int32),
            "difficult": [False, True, False, False],
            "area_fraction": np.float32([0.5] * 4),
            "max_instance_area": np.float32([10, 10, 5000, 10]),
        }
    )
    label_set = pd.DataFrame({"label_index": [0, 1], "seen": [True, True]})
    ids = np.array([0, 1, 2, 3, 4])
    # image 1's difficult label-0 positive scores lowest; masked, label 0's AP is 1
    scores = np.array([[0.9, 0.1], [0.0, 0.2], [0.2, 0.8], [0.3, 0.7], [0.1, 0.3]])
    frame = evaluate_stage(ids, scores, labels, label_set, ("all", "small"), stage="s", split="test")
    assert frame.loc[0, "map"] == 100.0 and frame.loc[0, "n_images"] == 5
    # small: label 1's large positive (image 2) is masked too
    assert frame.loc[1, "map"] == 100.0 and frame.loc[1, "subset"] == "small"
    assert (frame["stage"] == "s").all() and (frame["split"] == "test").all()


def test_a_subset_without_positives_has_undefined_metrics():
    """No small object: the small subset's precision, recall and F1 are NaN, not a misleading 0."""
    y = np.array([[1, 0], [0, 1], [1, 1]])
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6]])
    large = np.full(y.shape, 5000.0)
    (all_row, small_row) = evaluate(y, scores, max_area=large, subsets=("all", "small"))
    assert all_row["map"] == 100.0 and all_row["f1_at_3"] > 0
    metrics = EVAL_COLUMNS[EVAL_COLUMNS.index("map") :]
    assert all(np.isnan(small_row[m]) for m in metrics) and small_row["n_images"] == 3
