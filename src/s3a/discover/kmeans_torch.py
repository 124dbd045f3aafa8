"""k-means on torch: the parameters and result of :func:`s3a.discover.cluster.kmeans`, nearest-centroid
assignment in blocks, and scikit-learn's greedy k-means++ and Lloyd iterations on any device (the
``torch`` backend; see :mod:`s3a.discover.cluster` for the backends and their convergence rule)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from s3a.config import Int, KMeans
from s3a.device import pick_device, tensor_view

log = logging.getLogger(__name__)


class KMeansParams(KMeans):
    """Settings of :func:`kmeans`: the config block :class:`s3a.config.KMeans` (defaults are the
    official call of spec 5.1) and two run-time knobs.

    Attributes:
        n_init: independent k-means++ restarts; the one with the lowest inertia is kept (faiss: ``nredo``).
        max_iter: Lloyd iterations per restart at most (faiss: ``niter``).
        tol: relative tolerance on the centroid shift, as in scikit-learn: converged when the summed
            squared shift of all centroids in one iteration is ``<= tol * mean(var(x, axis=0))``
            (``torch``, ``sklearn``); faiss: relative change of the objective (``early_stop_threshold``).
        seed: seeds the k-means++ draws (``torch``), ``faiss.Kmeans(seed=)`` and ``random_state``.
        backend: ``"torch"`` (default: scikit-learn's k-means++ and Lloyd on any device),
            ``"sklearn"``, ``"faiss"`` or ``"auto"`` (see the module docstring's table).
        device: torch device for the ``torch`` backend; ``None`` picks ``cuda`` when present.
        chunk: rows per distance block of the ``torch`` backend (memory ``chunk * k`` floats).
        restart_batch: restarts of the ``torch`` backend computed together, as one batched computation
            (the k-means++ candidates of all of them in one matmul per centre, their Lloyd distances
            in one matmul per block): the same result as one restart at a time (the same draws, in
            the same order), in far fewer and larger device calls. Memory of the k-means++ step:
            ``restart_batch * (2 + int(ln k)) * N`` candidate distances, float32 then two float64
            copies (10 restarts at N = 1.28M, k = 1,000: about 2 GB at the peak); the Lloyd distance
            block stays ``chunk * k`` floats.
    """

    device: str | None = None
    chunk: Int = Field(16384, ge=1)
    restart_batch: Int = Field(10, ge=1)

    @field_validator("device")
    @classmethod
    def _torch_device(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                torch.device(value)
            except (RuntimeError, TypeError) as exc:
                raise ValueError(f"KMeansParams.device is not a torch device: {value!r}") from exc
        return value


@dataclass
class KMeansResult:
    """Result of :func:`kmeans`.

    Attributes:
        labels: ``(N,)`` int64 cluster of every point, in ``[0, k)``.
        centroids: ``(k, D)`` float32 cluster centres.
        inertia: sum over points of the squared distance to their centroid.
        n_iter: Lloyd iterations run by the kept restart.
        backend: the backend that ran (``auto`` resolved), e.g. ``"torch:cuda"``, ``"faiss-cpu"``.
    """

    labels: np.ndarray
    centroids: np.ndarray
    inertia: float
    n_iter: int
    backend: str = ""


# ----------------------------------------------------------------------------------------------------
# helpers


def _mean_variance(x: np.ndarray, chunk: int = 4096) -> float:
    """``mean(var(x, axis=0))`` in float64, ``chunk`` rows at a time (no float64 copy of ``x``)."""
    mean = x.mean(0, dtype=np.float64)
    total = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, x.shape[0], chunk):
        block = x[start : start + chunk].astype(np.float64)
        block -= mean
        total += np.einsum("ij,ij->j", block, block)
    return float(total.mean() / x.shape[0])


def _as_points(x: np.ndarray, what: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (N, D) array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{what} must be numeric, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not all(np.isfinite(x[s : s + 65536]).all() for s in range(0, len(x), 65536)):  # no (N, D) mask
        raise ValueError(f"{what} contains NaN or infinite values")
    return x


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got k={k}")
    if k > n:
        raise ValueError(f"k={k} clusters requested but only N={n} points: k must be <= N")
    return int(k)


def _row_sq_norms(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """``(N,)`` squared norms of the rows of ``x``, ``chunk`` rows at a time (no ``(N, D)`` temporary)."""
    out = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], chunk):
        block = x[start : start + chunk]
        out[start : start + chunk] = (block * block).sum(1)
    return out


def _nearest_runs(
    x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row of ``x`` in each of ``R`` sets of centroids, one matmul per block.

    Args:
        x: ``(N, D)`` float32 points; ``x_sq`` their ``(N,)`` squared norms.
        centroids: ``(R, k, D)`` float32, ``R`` independent sets (the restarts of a batch).
        chunk: the block holds ``chunk * k`` distances: ``max(1, chunk // R)`` rows against all ``R * k``
            centroids.

    Returns:
        ``(R, N)`` int64 labels and ``(R, N)`` float32 squared distances (clamped at 0); ties go to the
        lower index.
    """
    n = x.shape[0]
    runs, k = centroids.shape[:2]
    flat = centroids.reshape(runs * k, -1)
    c_sq = (flat * flat).sum(1)
    rows = max(1, chunk // runs)
    labels = torch.empty((runs, n), dtype=torch.int64, device=x.device)
    dist = torch.empty((runs, n), dtype=x.dtype, device=x.device)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        # ||x||^2 - 2 x.c + ||c||^2; argmin does not need ||x||^2 but the distance does
        block = torch.addmm(c_sq.unsqueeze(0), x[start:stop], flat.T, beta=1.0, alpha=-2.0)
        best, idx = block.view(stop - start, runs, k).min(dim=2)
        labels[:, start:stop] = idx.T
        dist[:, start:stop] = (best + x_sq[start:stop].unsqueeze(1)).clamp_min_(0).T
    return labels, dist


def _nearest(
    x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest of ``(k, D)`` centroids of every row of ``x`` (:func:`_nearest_runs` of one set): ``(N,)``
    int64 labels and ``(N,)`` float32 squared distances. Only a ``(chunk, k)`` block of distances exists
    at any time."""
    labels, dist = _nearest_runs(x, x_sq, centroids.unsqueeze(0), chunk)
    return labels[0], dist[0]


def assign_nearest(
    x: np.ndarray, centroids: np.ndarray, chunk: int = 16384, device: str | None = None
) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) of every point.

    Args:
        x: ``(N, D)`` points.
        centroids: ``(k, D)`` centres.
        chunk: rows per distance block; memory is ``O(chunk * k)`` beyond the inputs.
        device: torch device; ``None`` picks ``cuda`` when present.

    Returns:
        ``(N,)`` int64 labels in ``[0, k)``; ties go to the lower index.
    """
    x = _as_points(x)
    c = _as_points(centroids, "centroids")
    if c.shape[1] != x.shape[1]:
        raise ValueError(f"x has D={x.shape[1]} but centroids have D={c.shape[1]}")
    if c.shape[0] < 1:
        raise ValueError("centroids must hold at least one row")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    dev = pick_device(device)
    with torch.inference_mode():
        xt = tensor_view(x).to(dev)
        labels, _ = _nearest(xt, _row_sq_norms(xt, chunk), tensor_view(c).to(dev), chunk)
    return labels.cpu().numpy()


# ----------------------------------------------------------------------------------------------------
# torch backend


def _sq_dist_to(x: torch.Tensor, x_sq: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``(m, N)`` squared distances from ``m`` points ``rows`` to all of ``x``."""
    r_sq = (rows * rows).sum(1, keepdim=True)
    return torch.addmm(r_sq + x_sq.unsqueeze(0), rows, x.T, beta=1.0, alpha=-2.0).clamp_min_(0)


def _kmeans_pp_draws(rng: np.random.RandomState, n: int, k: int, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """The random numbers of ``runs`` successive k-means++ initialisations, drawn from ``rng`` in the
    order that one initialisation after the other draws them (scikit-learn's ``_kmeans_plusplus``: the
    first centre by ``rng.choice(n, p=uniform)``, then ``rng.uniform(size=trials)`` per centre).

    Returns:
        ``(runs,)`` int64 first centres and ``(runs, k - 1, trials)`` float64 uniforms in ``[0, 1)``.
    """
    trials = 2 + int(np.log(k))
    weights = np.ones(n, dtype=np.float32)  # scikit-learn's unit sample weights, in the data's dtype
    p = weights / weights.sum()
    firsts = np.empty(runs, dtype=np.int64)
    uniforms = np.empty((runs, k - 1, trials), dtype=np.float64)
    for run in range(runs):
        firsts[run] = rng.choice(n, p=p)
        for c in range(k - 1):
            uniforms[run, c] = rng.uniform(size=trials)
    return firsts, uniforms


def _kmeans_pp_runs(
    x: torch.Tensor, x_sq: torch.Tensor, k: int, rng: np.random.RandomState, runs: int
) -> torch.Tensor:
    """Greedy k-means++ (scikit-learn's variant), ``runs`` initialisations at once: ``(runs, k, D)``
    initial centroids drawn from ``x``.

    The random numbers come from ``rng`` (NumPy, on the host, :func:`_kmeans_pp_draws`) so that a seed
    gives the same draws on every device and in every batching, and they are drawn as scikit-learn
    draws them, so with the ``RandomState`` of the same seed the same centres are chosen unless float
    rounding puts a draw on the other side of a boundary. Each centre is one step for all runs: the
    ``runs * trials`` candidates are found on the device by a search in each run's float64 cumulative
    potential, and their distances to all points are one matmul.
    """
    n = x.shape[0]
    firsts, uniforms = _kmeans_pp_draws(rng, n, k, runs)
    draws = torch.from_numpy(uniforms).to(x.device)
    trials = uniforms.shape[2]
    rows = torch.arange(runs, device=x.device)
    centers = torch.empty((runs, k, x.shape[1]), dtype=x.dtype, device=x.device)
    first = torch.from_numpy(firsts).to(x.device)
    centers[:, 0] = x[first]
    closest = _sq_dist_to(x, x_sq, x[first]).double()  # (runs, N)
    potential = closest.sum(1)
    for c in range(1, k):
        r = draws[:, c - 1] * potential.unsqueeze(1)  # (runs, trials)
        cand = torch.searchsorted(torch.cumsum(closest, 1), r).clamp_(max=n - 1)
        d = _sq_dist_to(x, x_sq, x[cand.flatten()]).double().view(runs, trials, n)
        d = torch.minimum(closest.unsqueeze(1), d)
        pots = d.sum(2)
        best = torch.argmin(pots, 1)
        closest, potential = d[rows, best], pots[rows, best]
        centers[:, c] = x[cand[rows, best]]
    return centers


def _kmeans_pp(x: torch.Tensor, x_sq: torch.Tensor, k: int, rng: np.random.RandomState) -> torch.Tensor:
    """One greedy k-means++ initialisation (:func:`_kmeans_pp_runs` of one run): ``(k, D)`` centroids."""
    return _kmeans_pp_runs(x, x_sq, k, rng, 1)[0]


def _centroid_sums(
    x: torch.Tensor, labels: torch.Tensor, k: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(k, D)`` float64 sums of the points of every cluster and ``(k,)`` int64 counts.

    On CUDA the points are added in float64 (the atomic adds' order then cannot change the float32
    centroids); on the CPU each chunk is summed in float32 (sequential, so deterministic, and about
    twice as fast) and the chunk sums are accumulated in float64.
    """
    sums = torch.zeros((k, x.shape[1]), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        stop = min(start + chunk, x.shape[0])
        if x.is_cuda:
            sums.index_add_(0, labels[start:stop], x[start:stop].double())
        else:
            part = torch.zeros((k, x.shape[1]), dtype=x.dtype, device=x.device)
            sums += part.index_add_(0, labels[start:stop], x[start:stop])
    counts = torch.bincount(labels, minlength=k)
    return sums, counts


def _reseed_empty(
    x: torch.Tensor,
    labels: torch.Tensor,
    dist: torch.Tensor,
    sums: torch.Tensor,
    counts: torch.Tensor,
    old_centroids: torch.Tensor,
) -> torch.Tensor:
    """New ``(k, D)`` float32 centroids; every empty cluster moves to a far point (deterministic).

    The points farthest from their centroid are taken in order (stable sort, ties by index); a point is
    moved only out of a cluster that keeps at least one other point, and each point is used once. An
    empty cluster that finds no such point keeps its previous centroid.
    """
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        n_cand = min(x.shape[0], max(4 * len(empty), len(empty) + 64))
        order = torch.sort(dist, descending=True, stable=True).indices[:n_cand].tolist()
        cand_labels = labels[order].tolist()
        sizes = counts.tolist()
        kept = dict.fromkeys(empty, False)
        pos = 0
        for e in empty:
            while pos < len(order) and sizes[cand_labels[pos]] <= 1:
                pos += 1
            if pos == len(order):
                break
            p, old = order[pos], cand_labels[pos]
            pos += 1
            point = x[p].double()
            sums[old] -= point
            sizes[old] -= 1
            sums[e] = point
            sizes[e] = 1
            kept[e] = True
        counts = torch.tensor(sizes, dtype=torch.float64, device=x.device)
        centroids = (sums / counts.clamp_min(1).unsqueeze(1).double()).float()
        for e, moved in kept.items():
            if not moved:
                centroids[e] = old_centroids[e]
        return centroids
    return (sums / counts.unsqueeze(1).double()).float()


def _lloyd_runs(
    x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor, max_iter: int, tol: float, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, list[float], list[int]]:
    """Lloyd iterations of ``R`` restarts at once from ``(R, k, D)`` centroids, each stopping by itself.

    Each iteration assigns the points of the restarts still running in one batched distance pass
    (:func:`_nearest_runs`); the update, empty-cluster reseeding and stopping rule are per restart, as
    for one restart alone (strict convergence: the labels did not change; or the squared centroid shift
    is at most ``tol``; or ``max_iter`` iterations). A restart that stops leaves the batch. The final
    labels and inertia are computed per restart, exactly as for one restart alone.

    Returns:
        ``(R, N)`` labels, ``(R, k, D)`` centroids, and per restart the inertia and the iterations run.
    """
    runs, k = centroids.shape[:2]
    centroids = centroids.clone()
    n_iter = [0] * runs
    prev: list[torch.Tensor | None] = [None] * runs
    active = list(range(runs))
    while active:
        current = centroids[active]
        labels, dist = _nearest_runs(x, x_sq, current, chunk)
        running = []
        for j, run in enumerate(active):
            n_iter[run] += 1
            sums, counts = _centroid_sums(x, labels[j], k, chunk)
            new = _reseed_empty(x, labels[j], dist[j], sums, counts, current[j])
            shift = float(((new.double() - current[j].double()) ** 2).sum())
            centroids[run] = new
            converged = prev[run] is not None and torch.equal(labels[j], prev[run])
            if not converged and shift > tol and n_iter[run] < max_iter:
                prev[run] = labels[j]
                running.append(run)
        active = running
    # final labels and inertia against the final centroids (after a strict convergence they are
    # unchanged), one restart at a time: the distances of a wider matmul can differ in their last bits,
    # and restarts that reach the same partition tie on inertia up to such bits, so the kept restart
    # would depend on the batching
    labels = torch.empty((runs, x.shape[0]), dtype=torch.int64, device=x.device)
    inertia = []
    for run in range(runs):
        one_labels, dist = _nearest_runs(x, x_sq, centroids[run : run + 1], chunk)
        labels[run] = one_labels[0]
        inertia.append(float(dist[0].double().sum()))
    return labels, centroids, inertia, n_iter


def _lloyd(
    x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor, max_iter: int, tol: float, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Lloyd iterations from ``(k, D)`` centroids (:func:`_lloyd_runs` of one restart); returns labels,
    centroids, inertia, iterations."""
    labels, centroids, inertia, n_iter = _lloyd_runs(x, x_sq, centroids.unsqueeze(0), max_iter, tol, chunk)
    return labels[0], centroids[0], inertia[0], n_iter[0]


def _kmeans_torch(x: np.ndarray, k: int, params: KMeansParams, progress: bool) -> KMeansResult:
    dev = pick_device(params.device)
    rng = np.random.RandomState(params.seed)
    tol = _mean_variance(x) * params.tol
    best: tuple | None = None
    with torch.inference_mode():
        xt = tensor_view(x).to(dev)
        x_sq = _row_sq_norms(xt, params.chunk)
        bar = tqdm(total=params.n_init, desc=f"k-means k={k}", disable=not progress)
        for first in range(0, params.n_init, params.restart_batch):
            runs = min(params.restart_batch, params.n_init - first)
            init = _kmeans_pp_runs(xt, x_sq, k, rng, runs)
            labels, centroids, inertia, n_iter = _lloyd_runs(
                xt, x_sq, init, params.max_iter, tol, params.chunk
            )
            for j in range(runs):  # the first of equal inertias is kept, as one restart after the other
                log.debug(
                    "k-means restart %d: inertia %.6g after %d iterations", first + j, inertia[j], n_iter[j]
                )
                if best is None or inertia[j] < best[2]:
                    best = (labels[j], centroids[j], inertia[j], n_iter[j])
            bar.update(runs)
        bar.close()
    labels, centroids, inertia, n_iter = best
    return KMeansResult(
        labels=labels.cpu().numpy().astype(np.int64),
        centroids=centroids.cpu().numpy().astype(np.float32),
        inertia=inertia,
        n_iter=n_iter,
        backend=f"torch:{dev.type}",
    )
