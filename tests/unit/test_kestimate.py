"""K estimation (spec 4): exact chunked silhouette, the interval search, recovery of a planted K."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn.metrics
from helpers import planted_points

from s3a.discover.cluster import KMeansParams
from s3a.discover.kestimate import KSearchParams, estimate_k, search_interval, silhouette_score, subsample


def blobs(n: int, d: int, k: int, seed: int, spread: float = 0.15):
    """Unit-norm points around ``k`` unit-norm centres, well separated for ``spread`` << 1."""
    return planted_points(n, d, k, seed, spread, per_dim=True)


# ---------------------------------------------------------------------------------------------------
# silhouette


@pytest.mark.parametrize("k", [2, 3, 7, 40])
def test_silhouette_matches_sklearn(k):
    rng = np.random.RandomState(k)
    x = (rng.randn(900, 12) + 2.0).astype(np.float32)  # off-centre: the |x|^2 expansion is tested too
    y = rng.randint(0, k, 900)
    y[5] = k  # a singleton cluster: s = 0 for it
    ours = silhouette_score(x, y, chunk=128, device="cpu")
    assert ours == pytest.approx(sklearn.metrics.silhouette_score(x, y), abs=1e-5)


def test_silhouette_matches_sklearn_on_clustered_unit_vectors_and_duplicates():
    x, y = blobs(600, 16, 6, seed=0)
    x[10:20] = x[10]  # exact duplicates (distance 0 to each other)
    y[10:20] = y[10]
    ref = sklearn.metrics.silhouette_score(x, y)
    assert silhouette_score(x, y, chunk=100) == pytest.approx(ref, abs=1e-5)
    assert ref > 0.5


def test_silhouette_labels_can_be_any_integers():
    x, y = blobs(300, 8, 4, seed=1)
    remapped = np.array([-7, 3, 100, 42])[y]
    assert silhouette_score(x, remapped) == pytest.approx(silhouette_score(x, y), abs=1e-12)


def test_silhouette_chunk_invariance():
    rng = np.random.RandomState(3)
    x = rng.randn(500, 10).astype(np.float32)
    y = rng.randint(0, 9, 500)
    values = [silhouette_score(x, y, chunk=c) for c in (7, 17, 64, 499, 500, 4096)]
    np.testing.assert_allclose(values, values[0], atol=1e-10)


def test_silhouette_sample_matches_sklearn_sample():
    rng = np.random.RandomState(4)
    x = rng.randn(1000, 5).astype(np.float32)
    y = rng.randint(0, 5, 1000)
    ours = silhouette_score(x, y, sample_size=300, seed=11)
    ref = sklearn.metrics.silhouette_score(x, y, sample_size=300, random_state=11)
    assert ours == pytest.approx(ref, abs=1e-5)


def test_silhouette_blocks_are_n_by_chunk(monkeypatch):
    """Memory bound: every distance block is (N, chunk); no (N, N) tensor is formed."""
    import torch

    shapes = []
    real_matmul = torch.Tensor.__matmul__

    def spy(a, b):
        out = real_matmul(a, b)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch.Tensor, "__matmul__", spy)
    x = np.random.RandomState(5).randn(200, 4).astype(np.float32)
    silhouette_score(x, np.arange(200) % 3, chunk=32)
    assert shapes and all(s[0] == 200 and s[1] <= 32 for s in shapes)


def test_silhouette_errors():
    x = np.zeros((10, 2), np.float32)
    with pytest.raises(ValueError, match="number of labels"):
        silhouette_score(x, np.zeros(10, int))
    with pytest.raises(ValueError, match="number of labels"):
        silhouette_score(x, np.arange(10))
    with pytest.raises(ValueError, match="one N"):
        silhouette_score(x, np.zeros(9, int))


# ---------------------------------------------------------------------------------------------------
# interval search


def test_search_interval_follows_the_spec_steps():
    calls = []

    def f(k):
        calls.append(k)
        return -abs(k - 70)

    seen = search_interval(f, 0, 100)
    # lo, mid, hi; f(100) > f(0): lo := 50, mid 75; f(100) > f(50)? no: hi := 75, mid 62; ...
    assert [k for k, _ in seen][:3] == [0, 50, 100]
    assert calls == [k for k, _ in seen]  # each k evaluated once, in order
    assert len(calls) == len(set(calls))
    assert len(calls) <= 3 + math.floor(math.log2(100))
    best = max(seen, key=lambda ks: ks[1])[0]
    assert abs(best - 70) <= 2
    assert all(s == f(k) for k, s in seen)


@pytest.mark.parametrize(
    ("peak", "lo", "hi"), [(13, 2, 100), (400, 50, 2000), (51, 50, 2000), (7, 2, 9), (1999, 50, 2000)]
)
@pytest.mark.parametrize("shape", ["abs", "square"])
def test_search_interval_finds_the_peak_of_symmetric_unimodal_functions(peak, lo, hi, shape):
    """``score(hi) > score(lo)`` says "the peak is right of the midpoint" exactly when the score is
    symmetric about its peak; then the search brackets the peak to within one step."""
    fn = (lambda k: -abs(k - peak)) if shape == "abs" else (lambda k: -(float(k - peak) ** 2))
    seen = search_interval(fn, lo, hi)
    best = max(seen, key=lambda ks: ks[1])[0]
    assert abs(best - peak) <= 1


def test_search_interval_can_miss_a_skewed_peak():
    """The spec's search never compares the midpoint: on a skewed score it may drift off the peak
    (why the authors refine in three rounds). Pinned so that a change of the rule is noticed."""
    seen = search_interval(lambda k: -abs(math.log(k / 13)), 2, 100)
    assert [k for k, _ in seen][:4] == [2, 51, 100, 26]
    assert max(seen, key=lambda ks: ks[1])[0] == 26


def test_search_interval_small_and_cached():
    assert search_interval(lambda k: k, 5, 5) == [(5, 5.0)]
    assert [k for k, _ in search_interval(lambda k: k, 5, 6)] == [5, 6]
    cache = {5: 1.0}
    calls = []
    out = search_interval(lambda k: calls.append(k) or float(k), 5, 9, cache)
    assert 5 not in calls and out[0] == (5, 1.0)
    assert set(cache) >= {k for k, _ in out}
    with pytest.raises(ValueError, match="lo <= hi"):
        search_interval(lambda k: k, 9, 5)


# ---------------------------------------------------------------------------------------------------
# estimate_k


def test_subsample_size_and_seed():
    p = KSearchParams(min_sample=100, sample_fraction=0.5, seed=43)
    assert len(subsample(150, p)) == 100
    assert len(subsample(1000, p)) == 500
    assert len(subsample(60, p)) == 60
    np.testing.assert_array_equal(subsample(1000, p), np.random.RandomState(43).permutation(1000)[:500])


@pytest.mark.parametrize("true_k", [12, 40])
def test_estimate_k_recovers_planted_k(true_k):
    x, _ = blobs(3000, 64, true_k, seed=true_k)
    params = KSearchParams(lo=2, hi=100, kmeans=KMeansParams(n_init=1, max_iter=300, backend="torch"))
    k, table = estimate_k(x, params, progress=False)
    assert abs(k - true_k) <= 0.1 * true_k
    assert list(table.columns) == ["round", "k", "silhouette"]
    assert table["round"].min() == 1 and table["round"].max() <= 3
    best = table.loc[table["silhouette"].idxmax(), "k"]
    assert k == best  # the last round's best is the best seen overall
    # every round's rows are distinct k; round 1 starts at lo, mid, hi
    assert not table.duplicated(["round", "k"]).any()
    assert table[table["round"] == 1]["k"].tolist()[:3] == [2, 51, 100]


def test_estimate_k_rounds_follow_the_spec(monkeypatch):
    """Round 2 searches [lo, K1], round 3 [K2, (K1 + K2) // 2]; scores are cached across rounds."""
    from s3a.discover import kestimate

    x = np.random.RandomState(0).randn(400, 4).astype(np.float32)
    peak = 37
    calls = []

    def fake_silhouette(xs, labels, **kwargs):
        k = len(np.unique(labels))
        calls.append(k)
        return -abs(k - peak) + (0.5 if k == 26 else 0.0)  # a bump keeps round 3 non-degenerate

    monkeypatch.setattr(kestimate, "silhouette_score", fake_silhouette)
    p = KSearchParams(lo=2, hi=100, kmeans=KMeansParams(n_init=1, max_iter=5, backend="torch"))
    k, table = estimate_k(x, p, progress=False)
    assert len(calls) == len(set(calls))  # never a K twice
    r1 = table[table["round"] == 1]
    k1 = int(r1.loc[r1["silhouette"].idxmax(), "k"])
    r2 = table[table["round"] == 2]
    assert r2["k"].min() == 2 and r2["k"].max() == k1
    k2 = int(r2.loc[r2["silhouette"].idxmax(), "k"])
    r3 = table[table["round"] == 3]
    if k2 != (k1 + k2) // 2:
        assert r3["k"].min() == min(k2, (k1 + k2) // 2) and r3["k"].max() == max(k2, (k1 + k2) // 2)
    assert k == int(table.loc[table["silhouette"].idxmax(), "k"])


def test_estimate_k_caps_hi_at_the_sample():
    x, _ = blobs(40, 8, 4, seed=2)
    k, table = estimate_k(
        x, KSearchParams(lo=2, hi=2000, kmeans=KMeansParams(n_init=1, backend="torch")), False
    )
    assert table["k"].max() == 39
    assert 2 <= k <= 39
    with pytest.raises(ValueError, match="N - 1"):
        estimate_k(x[:10], KSearchParams(lo=20, hi=30), progress=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [("lo", 1), ("hi", 1), ("rounds", 0), ("min_sample", 0), ("sample_fraction", 0.0), ("seed", -2),
     ("silhouette_sample", 2), ("kmeans", 3)],
)  # fmt: skip
def test_ksearch_params_validated(field, value):
    with pytest.raises(ValueError, match=field):
        KSearchParams(**{field: value})


def test_ksearch_params_from_mapping():
    p = KSearchParams(kmeans={"n_init": 2, "backend": "sklearn"})
    assert p.kmeans == KMeansParams(n_init=2, backend="sklearn")
    # the official search k-means: KMeans(n_clusters=K, random_state=0) with n_init=10, max_iter=300,
    # on the torch backend (scikit-learn's k-means++ on every machine)
    assert KSearchParams().kmeans == KMeansParams(n_init=10, max_iter=300, tol=1e-4, seed=0, backend="torch")
    with pytest.raises(ValueError, match="hi"):
        KSearchParams(lo=100, hi=50)


# ---------------------------------------------------------------------------------------------------
# scale: the silhouette sample does not grow with N


def test_silhouette_makes_no_float64_copy_of_the_points():
    """Host memory of a score is one float32 centred copy of the points (plus torch's blocks)."""
    import tracemalloc

    x, y = blobs(20000, 64, 10, seed=6)
    tracemalloc.start()
    try:
        silhouette_score(x, y, chunk=512, device="cpu")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * x.nbytes  # a float64 copy alone would be 2 * x.nbytes


@pytest.mark.slow
def test_k_search_on_200k_points_keeps_the_silhouette_sample_bounded(monkeypatch):
    """Default silhouette settings (the K interval and the k-means restarts cut for time): 100k
    points are clustered, as the official code does, but every silhouette scores a fixed sample of
    ``silhouette_sample`` points, and the planted K is still found."""
    from s3a.discover import kestimate

    defaults = KSearchParams()
    assert isinstance(defaults.silhouette_sample, int) and defaults.silhouette_sample <= 20000
    scored = []
    real = kestimate.silhouette_score

    def spy(x, labels, **kwargs):
        scored.append((len(x), kwargs.get("sample_size")))
        return real(x, labels, **kwargs)

    monkeypatch.setattr(kestimate, "silhouette_score", spy)
    x, _ = blobs(200_000, 16, 6, seed=7, spread=0.3)
    params = KSearchParams(lo=3, hi=9, kmeans=KMeansParams(n_init=1, max_iter=100))
    k, table = estimate_k(x, params, progress=False)
    assert k == 6
    assert scored and len(scored) == table["k"].nunique()
    assert all(n == defaults.silhouette_sample and s is None for n, s in scored)
