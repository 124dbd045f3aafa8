"""Pseudo-label aggregation (MULTILABEL_SPEC 5, 11.1): formulas, identities, repro, planted simulation."""

from __future__ import annotations

import numpy as np
import pytest

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


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _random_views(seed: int = 0, n: int = 40, m: int = 9, c: int = 12, d: int = 16):
    rng = np.random.default_rng(seed)
    w = _unit(rng.normal(size=(c, d)))
    return _unit(rng.normal(size=(n, d))), _unit(rng.normal(size=(n, m, d))), w


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

_LAYOUTS = {  # regions on a 2x2 grid, (x0, y0, x1, y1) in cells
    "full": [(0, 0, 2, 2)],
    "halves_v": [(0, 0, 1, 2), (1, 0, 2, 2)],
    "halves_h": [(0, 0, 2, 1), (0, 1, 2, 2)],
    "half_two": [(0, 0, 1, 2), (1, 0, 2, 1), (1, 1, 2, 2)],
    "quad": [(0, 0, 1, 1), (1, 0, 2, 1), (0, 1, 1, 2), (1, 1, 2, 2)],
}
_PROBS = [0.10, 0.15, 0.15, 0.30, 0.30]


def _tile_shares(regions) -> np.ndarray:
    """(9, R) share of each 3x3 tile (side 2/3 of a cell) inside each region."""
    out = np.zeros((9, len(regions)))
    for j in range(9):
        r, c = divmod(j, 3)
        tx0, ty0, tx1, ty1 = c * 2 / 3, r * 2 / 3, (c + 1) * 2 / 3, (r + 1) * 2 / 3
        for k, (x0, y0, x1, y1) in enumerate(regions):
            ox = max(0.0, min(tx1, x1) - max(tx0, x0))
            oy = max(0.0, min(ty1, y1) - max(ty0, y0))
            out[j, k] = ox * oy / (4 / 9)
    return out


def planted(seed: int, sigma_t: float, distract: float = 0.0, n: int = 500, c: int = 20, d: int = 64):
    """Section 11.1's simulation: ``(y (n, c) bool, global (n, d), tiles (n, 9, d), T (c, d))``.

    Distractors: each image draws one absent label d; each of its tiles gets ``+distract·t_d`` with
    probability 0.2. (Drawing a new d per tile gave mAP(α) 71-73 and S_final 89-90, below the spec's
    measured numbers; one d per image gives S_g 80.2-81.7, α 78.9-79.9, S_final 92.1-92.7 on seeds
    0-2, closest to the spec's S_g 80.0-81.7, α 81.8-85.8, S_final 93.6-95.1.)
    """
    rng = np.random.default_rng(seed)
    t = _unit(rng.normal(size=(c, d)))
    y = np.zeros((n, c), bool)
    glob = np.zeros((n, d))
    tiles = np.zeros((n, 9, d))
    names = list(_LAYOUTS)
    for i in range(n):
        regions = _LAYOUTS[names[rng.choice(5, p=_PROBS)]]
        labels = rng.choice(c, len(regions), replace=False)
        y[i, labels] = True
        areas = np.array([(x1 - x0) * (y1 - y0) / 4 for x0, y0, x1, y1 in regions])
        wts = np.exp(8 * areas) / np.exp(8 * areas).sum()
        glob[i] = _unit(wts @ t[labels] + 0.5 * rng.normal(size=d) / np.sqrt(d))
        shares = _tile_shares(regions)
        dd = rng.choice(np.flatnonzero(~y[i]))  # the image's distractor: one absent label
        for j in range(9):
            v = shares[j] @ t[labels] + sigma_t * rng.normal(size=d) / np.sqrt(d)
            if distract and rng.random() < 0.2:
                v = v + distract * t[dd]
            tiles[i, j] = _unit(v)
    return y, glob, tiles, t


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_clean_local_views_find_small_objects(seed):
    y, glob, tiles, t = planted(seed, sigma_t=0.5)
    v = view_scores(glob, tiles, t)
    m_g = mean_average_precision(y, v.s_global)[0]
    m_a = mean_average_precision(y, v.s_alpha)[0]
    assert m_a >= 99 and m_a - m_g >= 15, (m_g, m_a)


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_distractors_global_and_local_correct_each_other(seed):
    y, glob, tiles, t = planted(seed, sigma_t=1.0, distract=1.2)
    v = view_scores(glob, tiles, t)
    _, final = aggregate(v)
    m_g, m_a, m_f = (mean_average_precision(y, s)[0] for s in (v.s_global, v.s_alpha, final))
    assert m_f - m_g >= 8 and m_f - m_a >= 5, (m_g, m_a, m_f)
