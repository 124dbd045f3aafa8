"""Pseudo-label aggregation (MULTILABEL_SPEC 5, 11.1): formulas, identities, repro, planted simulation."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import planted_multilabel, unit

from s3a.multilabel.metrics import mean_average_precision
from s3a.multilabel.pseudo import (
    REPRO_SCALE,
    PseudoParams,
    ViewScores,
    aggregate,
    label_softmax,
    read_scores,
    scores_table,
    view_scores,
)


def _random_views(seed: int = 0, n: int = 40, m: int = 9, c: int = 12, d: int = 16):
    rng = np.random.default_rng(seed)
    w = unit(rng.normal(size=(c, d)))
    return unit(rng.normal(size=(n, d))), unit(rng.normal(size=(n, m, d))), w


def test_hand_computed_example():
    # two labels, two tiles: every quantity by hand
    s = ViewScores(
        s_global=np.array([[0.8, 0.2]], np.float32),
        s_alpha=np.array([[0.6, 0.5]], np.float32),
        s_beta=np.array([[0.5, 0.4]], np.float32),
        s_mean=np.array([[0.55, 0.45]], np.float32),
    )
    agg, final = aggregate(s, PseudoParams(zeta=0.55, lam=0.0))
    np.testing.assert_allclose(agg, [[0.6, 0.4]])  # label 0: α ≥ ζ -> α; label 1: α < ζ -> β
    np.testing.assert_allclose(final, [[0.7, 0.3]], atol=1e-7)
    _, final = aggregate(s, PseudoParams(zeta=0.55, lam=0.5))
    np.testing.assert_allclose(final, [[0.5 * (1.4 + 0.5 * 0.2), 0.5 * (0.6 + 0.5 * 0.2)]], atol=1e-7)
    agg, _ = aggregate(s, PseudoParams(local_reduce="mean"))
    np.testing.assert_allclose(agg, s.s_mean)


def test_view_scores_match_definition():
    z, t, w = _random_views()
    v = view_scores(z, t, w, PseudoParams(chunk=7))
    tiles = label_softmax(t @ w.T, 100.0)
    np.testing.assert_allclose(v.s_global, label_softmax(z @ w.T, 100.0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(v.s_alpha, tiles.max(axis=1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(v.s_beta, tiles.min(axis=1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(v.s_global.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aggregation_identities(seed):
    z, t, w = _random_views(seed)
    v = view_scores(z, t, w)
    agg, final = aggregate(v, PseudoParams(zeta=0.0))
    np.testing.assert_array_equal(agg, v.s_alpha)
    agg, _ = aggregate(v, PseudoParams(zeta=float(v.s_alpha.max()) + 1e-3))
    np.testing.assert_array_equal(agg, v.s_beta)
    agg, final = aggregate(v, PseudoParams(lam=1.0))
    np.testing.assert_allclose(final, np.maximum(v.s_global, agg), atol=1e-7)
    _, final = aggregate(v, PseudoParams(lam=-1.0))
    np.testing.assert_allclose(final, np.minimum(v.s_global, agg), atol=1e-7)
    _, final = aggregate(v, PseudoParams(lam=0.0))
    np.testing.assert_allclose(final, 0.5 * (v.s_global + agg), atol=1e-7)
    assert final.shape == (40, 12) and final.min() >= 0 and final.max() <= 1
    np.testing.assert_array_equal(aggregate(v, PseudoParams(local_reduce="max"))[0], v.s_alpha)


def test_repro_temperature_is_flat_and_thresholds_pick_beta():
    rng = np.random.default_rng(0)
    c, d, n, m = 20, 64, 50, 9
    # embeddings whose cosines to the label vectors span CLIP's usual [0.1, 0.35]
    cos_g = rng.uniform(0.1, 0.35, size=(n, c))
    cos_t = rng.uniform(0.1, 0.35, size=(n, m, c))
    s_g = label_softmax(cos_g, REPRO_SCALE)
    s_t = label_softmax(cos_t, REPRO_SCALE)
    assert np.abs(s_g - 1 / 20).max() <= 0.005 and np.abs(s_t - 1 / 20).max() <= 0.005
    v = ViewScores(s_g, s_t.max(axis=1), s_t.min(axis=1), s_t.mean(axis=1))
    agg, _ = aggregate(v, PseudoParams(temperature="repro", zeta=0.1))
    np.testing.assert_array_equal(agg, v.s_beta)
    assert PseudoParams(temperature="repro").temperature == "repro"
    assert abs(REPRO_SCALE * np.log(100) - 1) < 1e-12
    with pytest.raises(ValueError, match="temperature"):
        PseudoParams(temperature="hot")
    del d


def test_scores_table_roundtrip_recomputes_any_setting():
    z, t, w = _random_views(3)
    v = view_scores(z, t, w)
    ids = np.arange(40) * 3
    table = scores_table(ids, v, PseudoParams(zeta=0.0))
    got_ids, got, final = read_scores(table)
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(final, aggregate(v, PseudoParams(zeta=0.0))[1])
    # another (zeta, lambda) from the stored scores alone equals the direct computation
    p = PseudoParams(zeta=0.2, lam=0.3)
    np.testing.assert_array_equal(aggregate(got, p)[1], aggregate(v, p)[1])


# ------------------------------------------------------------------ planted feature-space simulation


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_clean_local_views_find_small_objects(seed):
    y, glob, tiles, t = planted_multilabel(seed, sigma_t=0.5)
    v = view_scores(glob, tiles, t)
    m_g = mean_average_precision(y, v.s_global)[0]
    m_a = mean_average_precision(y, v.s_alpha)[0]
    assert m_a >= 99 and m_a - m_g >= 15, (m_g, m_a)


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_distractors_global_and_local_correct_each_other(seed):
    y, glob, tiles, t = planted_multilabel(seed, sigma_t=1.0, distract=1.2)
    v = view_scores(glob, tiles, t)
    _, final = aggregate(v)
    m_g, m_a, m_f = (mean_average_precision(y, s)[0] for s in (v.s_global, v.s_alpha, final))
    assert m_f - m_g >= 8 and m_f - m_a >= 5, (m_g, m_a, m_f)
