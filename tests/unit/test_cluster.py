"""k-means backends (spec 5.1): planted clusters, determinism, parity with scikit-learn, edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import planted_points
from sklearn.metrics import adjusted_rand_score

from s3a.discover import cluster
from s3a.discover.cluster import KMeansParams, assign_nearest, cluster_embeddings, kmeans, resolve_backend

HAS_FAISS = cluster._faiss() is not None


def planted(n: int = 1500, d: int = 32, k: int = 8, seed: int = 0, noise: float = 0.1):
    """Unit-norm points around ``k`` unit-norm centres (CLIP-like), labels ``i % k``."""
    return planted_points(n, d, k, seed, noise)


BACKENDS = [
    "torch",
    pytest.param("faiss", marks=pytest.mark.skipif(not HAS_FAISS, reason="no faiss")),
    "sklearn",
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_planted_clusters_recovered(backend):
    x, y = planted()
    res = kmeans(x, 8, KMeansParams(backend=backend, n_init=5, max_iter=100))
    assert adjusted_rand_score(y, res.labels) > 0.999
    assert res.labels.dtype == np.int64 and res.labels.shape == (len(x),)
    assert res.centroids.dtype == np.float32 and res.centroids.shape == (8, 32)
    assert set(np.unique(res.labels)) == set(range(8))
    # centroids are the means of their points and the inertia is their squared distances
    means = np.stack([x[res.labels == c].mean(0) for c in range(8)])
    np.testing.assert_allclose(res.centroids, means, atol=1e-4)
    inertia = ((x - res.centroids[res.labels]) ** 2).sum()
    assert res.inertia == pytest.approx(inertia, rel=1e-4)
    assert res.n_iter >= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic_for_a_seed(backend):
    x, _ = planted(n=800, k=20, noise=0.5, seed=1)
    p = KMeansParams(backend=backend, n_init=2, max_iter=50, seed=3)
    a, b = kmeans(x, 20, p), kmeans(x, 20, p)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia


def test_torch_seed_changes_the_init():
    x = np.random.RandomState(0).randn(600, 8).astype(np.float32)
    a = kmeans(x, 15, KMeansParams(backend="torch", n_init=1, seed=0))
    b = kmeans(x, 15, KMeansParams(backend="torch", n_init=1, seed=1))
    assert not np.array_equal(a.centroids, b.centroids)


@pytest.mark.slow
def test_torch_inertia_matches_sklearn():
    """Unstructured data (many local optima): best-of-n inertia within 1% of scikit-learn's."""
    x = np.random.RandomState(2).randn(3000, 16).astype(np.float32)
    ours = kmeans(x, 30, KMeansParams(backend="torch", n_init=3, max_iter=300))
    ref = kmeans(x, 30, KMeansParams(backend="sklearn", n_init=3, max_iter=300))
    assert abs(ours.inertia - ref.inertia) / ref.inertia < 0.01


def test_torch_lloyd_matches_sklearn_from_the_same_init():
    """Same initial centroids -> the same Lloyd trajectory as sklearn's ``algorithm='lloyd'``."""
    import torch
    from sklearn.cluster import KMeans

    x = np.random.RandomState(4).randn(2000, 8).astype(np.float32)
    xt = torch.from_numpy(x)
    x_sq = (xt * xt).sum(1)
    init = cluster._kmeans_pp(xt, x_sq, 12, np.random.RandomState(0))
    tol = float(np.var(x, axis=0).mean()) * 1e-4
    labels, centroids, inertia, _ = cluster._lloyd(xt, x_sq, init, 300, tol, chunk=256)
    ref = KMeans(12, init=init.numpy(), n_init=1, max_iter=300, tol=1e-4, algorithm="lloyd").fit(x)
    assert adjusted_rand_score(ref.labels_, labels.numpy()) == pytest.approx(1.0)
    np.testing.assert_allclose(centroids.numpy(), ref.cluster_centers_, atol=1e-4)
    assert inertia == pytest.approx(ref.inertia_, rel=1e-5)


def test_kmeanspp_picks_distinct_points_of_the_data():
    import torch

    x = np.random.RandomState(5).randn(300, 4).astype(np.float32)
    xt = torch.from_numpy(x)
    c = cluster._kmeans_pp(xt, (xt * xt).sum(1), 10, np.random.RandomState(0)).numpy()
    rows = {tuple(r) for r in x}
    assert all(tuple(r) in rows for r in c)
    assert len({tuple(r) for r in c}) == 10


def test_chunk_does_not_change_the_result():
    x, _ = planted(n=700, k=10, noise=0.4, seed=6)
    a = kmeans(x, 10, KMeansParams(backend="torch", n_init=2, chunk=64))
    b = kmeans(x, 10, KMeansParams(backend="torch", n_init=2, chunk=100000))
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.centroids, b.centroids, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicates_and_k_close_to_n(backend):
    """12 clusters on 50 points with only 10 distinct values: finite centroids, zero inertia."""
    base = np.random.RandomState(7).randn(10, 4).astype(np.float32)
    x = np.repeat(base, 5, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn: "Number of distinct clusters (10) found smaller than ..."
        res = kmeans(x, 12, KMeansParams(backend=backend, n_init=2, max_iter=50))
    assert np.isfinite(res.centroids).all()
    assert res.labels.min() >= 0 and res.labels.max() < 12
    assert len(np.unique(res.labels)) == 10
    assert res.inertia == pytest.approx(0.0, abs=1e-3)


def test_empty_clusters_reseeded_from_the_farthest_points():
    """Initial centroids far from every point leave clusters empty; they move onto far points."""
    import torch

    x = np.concatenate([np.zeros((5, 2)), np.ones((5, 2)) * 10, [[30.0, 30.0]]]).astype(np.float32)
    xt = torch.from_numpy(x)
    init = torch.tensor([[0.0, 0.0], [100.0, 100.0], [-100.0, -100.0]])
    labels, centroids, inertia, _ = cluster._lloyd(xt, (xt * xt).sum(1), init, 50, 0.0, chunk=4)
    assert len(np.unique(labels.numpy())) == 3
    assert inertia == pytest.approx(0.0, abs=1e-3)
    assert sorted(map(tuple, centroids.numpy().round(3))) == [(0.0, 0.0), (10.0, 10.0), (30.0, 30.0)]


def test_k_equal_n_and_k_one():
    x = np.random.RandomState(8).randn(20, 3).astype(np.float32)
    res = kmeans(x, 20, KMeansParams(backend="torch", n_init=1))
    assert sorted(res.labels) == list(range(20))
    assert res.inertia == pytest.approx(0.0, abs=1e-4)
    one = kmeans(x, 1, KMeansParams(backend="torch", n_init=1))
    assert (one.labels == 0).all()
    np.testing.assert_allclose(one.centroids[0], x.mean(0), atol=1e-5)


@pytest.mark.parametrize("k", [0, -1, 21])
def test_bad_k(k):
    x = np.zeros((20, 3), np.float32)
    with pytest.raises(ValueError, match="k"):
        kmeans(x, k, KMeansParams(backend="torch"))


def test_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        kmeans(np.zeros(5, np.float32), 2)
    with pytest.raises(ValueError, match="NaN"):
        kmeans(np.full((5, 2), np.nan, np.float32), 2)


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_init", 0), ("max_iter", 0), ("tol", -1.0), ("seed", -1), ("backend", "cuml"), ("chunk", 0)],
)
def test_params_validated(field, value):
    with pytest.raises(ValueError, match=field):
        KMeansParams(**{field: value})


def test_auto_backend(monkeypatch):
    """faiss-gpu, else torch on CUDA, else faiss-cpu, else torch on the CPU."""
    monkeypatch.setattr(cluster, "_faiss_gpus", lambda: 1)
    assert resolve_backend(KMeansParams(backend="auto")) == "faiss"
    assert resolve_backend(KMeansParams()) == "torch"  # the default never depends on the machine
    monkeypatch.setattr(cluster, "_faiss_gpus", lambda: 0)
    assert resolve_backend(KMeansParams(backend="auto", device="cuda")) == "torch"
    monkeypatch.setattr(cluster, "_faiss", lambda: object())
    assert resolve_backend(KMeansParams(backend="auto", device="cpu")) == "faiss"
    monkeypatch.setattr(cluster, "_faiss", lambda: None)
    assert resolve_backend(KMeansParams(backend="auto", device="cpu")) == "torch"
    assert resolve_backend(KMeansParams(backend="sklearn")) == "sklearn"
    with pytest.raises(ValueError, match="faiss is not installed"):
        kmeans(np.zeros((4, 2), np.float32), 2, KMeansParams(backend="faiss"))


@pytest.mark.parametrize("k", [5, 30, 100])
def test_torch_kmeanspp_draws_the_centres_sklearn_draws(k):
    """Same seed, same data: the torch backend's k-means++ picks scikit-learn's centres."""
    import torch
    from sklearn.cluster import kmeans_plusplus

    x = np.random.RandomState(k).randn(3000, 16).astype(np.float32)
    ref, _ = kmeans_plusplus(x, k, random_state=np.random.RandomState(0))
    xt = torch.from_numpy(x)
    ours = cluster._kmeans_pp(xt, (xt * xt).sum(1), k, np.random.RandomState(0)).numpy()
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize(("k", "n_init"), [(8, 3), (30, 3), (17, 1)])
def test_torch_backend_reproduces_sklearn_partition(k, n_init):
    """The reproduction backend: torch gives scikit-learn's KMeans partition for the same seed."""
    x = np.random.RandomState(1).randn(3000, 16).astype(np.float32)
    ours = kmeans(x, k, KMeansParams(backend="torch", n_init=n_init, max_iter=300, device="cpu"))
    ref = kmeans(x, k, KMeansParams(backend="sklearn", n_init=n_init, max_iter=300))
    np.testing.assert_array_equal(ours.labels, ref.labels)
    assert ours.inertia == pytest.approx(ref.inertia, rel=1e-5)


@pytest.mark.parametrize(("k", "noise"), [(8, 0.1), (20, 0.5), (40, 2.0)])
def test_restarts_in_one_batch_give_the_result_of_one_restart_at_a_time(k, noise):
    """restart_batch only groups the work: the same draws in the same order, the same partition."""
    x, _ = planted(2000, 24, k, seed=k, noise=noise)
    one, *batched = (
        kmeans(x, k, KMeansParams(backend="torch", n_init=7, max_iter=300, device="cpu", restart_batch=b))
        for b in (1, 3, 7)
    )
    for result in batched:
        np.testing.assert_array_equal(result.labels, one.labels)
        np.testing.assert_array_equal(result.centroids, one.centroids)
        # exactly: restarts that reach the same partition tie up to the last bits of their inertia
        assert result.n_iter == one.n_iter and result.inertia == one.inertia


def test_each_restart_of_a_batch_draws_and_stops_as_it_would_alone():
    """A batch of k-means++ runs draws what the runs draw one after another from the same generator,
    and each restart of a batched Lloyd stops at its own iteration with its own result."""
    import torch

    x = np.random.RandomState(6).randn(1500, 8).astype(np.float32)
    xt = torch.from_numpy(x)
    x_sq = (xt * xt).sum(1)
    batch = cluster._kmeans_pp_runs(xt, x_sq, 12, np.random.RandomState(3), 5)
    rng = np.random.RandomState(3)
    alone = [cluster._kmeans_pp(xt, x_sq, 12, rng) for _ in range(5)]
    assert batch.shape == (5, 12, 8) and all(torch.equal(batch[i], alone[i]) for i in range(5))
    tol = float(np.var(x, axis=0).mean()) * 1e-4
    labels, centroids, inertia, n_iter = cluster._lloyd_runs(xt, x_sq, batch, 300, tol, chunk=256)
    assert len(set(n_iter)) > 1  # the restarts stop at different iterations
    for i in range(5):
        one_labels, one_centroids, one_inertia, one_iter = cluster._lloyd(xt, x_sq, alone[i], 300, tol, 256)
        assert torch.equal(labels[i], one_labels) and torch.equal(centroids[i], one_centroids)
        assert n_iter[i] == one_iter and inertia[i] == one_inertia


def test_config_pins_a_kmeans_backend_that_matches_sklearn():
    """config.yaml (and the library and config-model defaults, which the schema is generated from and
    tests/unit/test_config.py keeps it in step with) use torch or sklearn, never auto/faiss."""
    from pathlib import Path

    import yaml

    from s3a.config import Discover

    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    assert KMeansParams().backend == "torch"
    assert Discover().kmeans.backend == "torch"
    assert Discover().k_search.kmeans.backend == "torch"
    assert config["discover"]["kmeans"]["backend"] in ("torch", "sklearn")
    assert config["discover"]["k_search"]["kmeans"]["backend"] in ("torch", "sklearn")
    assert config["discover"]["k_search"]["kmeans"]["n_init"] == 10  # the official search k-means


def test_tolerance_variance_is_chunked_and_exact():
    """The k-means tolerance's mean variance, computed in float64 blocks (no float64 copy of x)."""
    x = (np.random.RandomState(2).randn(10001, 7) * 3 + 5).astype(np.float32)
    ref = float(np.mean(np.var(x, axis=0, dtype=np.float64)))
    for chunk in (1, 333, 4096, 20000):
        assert cluster._mean_variance(x, chunk) == pytest.approx(ref, rel=1e-12)


def test_assign_nearest_matches_brute_force():
    rng = np.random.RandomState(9)
    x, c = rng.randn(500, 6).astype(np.float32), rng.randn(17, 6).astype(np.float32)
    expected = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
    for chunk in (1, 7, 500, 10_000):
        np.testing.assert_array_equal(assign_nearest(x, c, chunk=chunk, device="cpu"), expected)
    with pytest.raises(ValueError, match="D="):
        assign_nearest(x, c[:, :3])


def test_nearest_uses_bounded_blocks(monkeypatch):
    """The distance blocks are (chunk, k), never (N, k)."""
    import torch

    shapes = []
    real = torch.addmm

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch, "addmm", spy)
    x = np.random.RandomState(10).randn(100, 4).astype(np.float32)
    assign_nearest(x, x[:5], chunk=16, device="cpu")
    assert shapes and max(s[0] for s in shapes) == 16 and all(s[1] == 5 for s in shapes)
    # four restarts at once: 16 // 4 rows against 4 * 5 centroids, still 16 * 5 distances a block
    shapes.clear()
    xt = torch.from_numpy(x)
    cluster._nearest_runs(xt, (xt * xt).sum(1), torch.from_numpy(np.stack([x[:5]] * 4)), chunk=16)
    assert shapes and max(s[0] for s in shapes) == 4 and all(s[1] == 20 for s in shapes)


def test_cluster_embeddings_table():
    x, y = planted(n=300, k=5, seed=11)
    ids = np.array([f"img{i:04d}" for i in range(300)])
    df = cluster_embeddings(ids, x, 5, KMeansParams(backend="torch", n_init=2))
    assert list(df.columns) == ["image_id", "cluster"]
    assert df["cluster"].dtype == np.int64
    pd.testing.assert_series_equal(df["image_id"], pd.Series(ids, name="image_id"))
    assert adjusted_rand_score(y, df["cluster"]) > 0.999
    with pytest.raises(ValueError, match="image_ids"):
        cluster_embeddings(ids[:-1], x, 5)


def test_read_only_inputs_give_no_torch_warning():
    """Embeddings read from Parquet are read-only arrays: k-means and the names table use them as they
    are (no copy) without torch's non-writable warning."""
    import warnings

    from s3a.discover.kmeans_torch import assign_nearest
    from s3a.names import top_names

    x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    x.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assign_nearest(x, x[:5].copy(), device="cpu")
        top_names(x, x[:7], k=2, device="cpu")
    from s3a.device import tensor_view

    assert tensor_view(x).data_ptr() == x.ctypes.data  # a view of the array, not a copy
