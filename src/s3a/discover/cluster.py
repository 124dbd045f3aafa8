"""K-means over image embeddings (spec 5.1): the initial partition ``P_0`` of Cluster-Vote-Prompt-Realign.

The official code runs ``sklearn.cluster.KMeans(n_clusters=K, random_state=0, n_init=17,
max_iter=1000)`` on the unit-norm train features (Euclidean). :func:`kmeans` does the same job with
three backends, chosen by :class:`KMeansParams.backend`. Which initialisation each gives:

=========== ============================================================ ======================
backend     initialisation                                               same as the official
=========== ============================================================ ======================
``torch``   scikit-learn's greedy k-means++, same random draws per seed   yes (the default)
``sklearn`` scikit-learn's greedy k-means++ (it *is* the official call)   yes (CPU only, slow)
``faiss``   faiss's k-means++ (faiss >= 1.13) or random sampling (older)  no
``auto``    whichever of the above the machine offers (below)             depends on the machine
=========== ============================================================ ======================

``torch`` is the default because it is the official algorithm on every machine, CPU or GPU: on the
same data and seed it picks the same k-means++ centres as scikit-learn (up to float rounding at a
draw boundary) and runs the same Lloyd iterations and stopping rule, so its partitions match
``sklearn``'s (tested). ``auto`` trades that for speed and must not be used for reproduction.

``torch``
    Lloyd iterations written here, on ``cuda`` when present, else on the CPU. Greedy k-means++
    initialisation (scikit-learn's, ``2 + int(log k)`` local trials, the same draws), seeded by ``seed``; the
    nearest-centroid step is one chunked matmul (:func:`assign_nearest`, ``chunk`` rows at a time, so
    memory is ``O(chunk * k)`` beyond the data); the update is an ``index_add_`` of the points into
    float64 sums; empty clusters are re-seeded from the points farthest from their centroid (in a fixed,
    stable order, so the run is reproducible); best of ``n_init`` runs by inertia.
``faiss``
    ``faiss.Kmeans(niter=max_iter, nredo=n_init, seed=seed)`` on every point (the per-centroid
    subsampling cap is lifted), on GPUs when the installed faiss has any. Where the installed faiss
    has the options (``ClusteringParameters.init_method`` / ``early_stop_threshold``, e.g. 1.15), the
    initialisation is faiss's k-means++ and ``tol`` becomes ``early_stop_threshold`` (stop when the
    objective changes by less than this relative amount); an older faiss initialises by random
    sampling and has no tolerance.
``sklearn``
    The baseline: ``sklearn.cluster.KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, tol=tol,
    random_state=seed)``.
``auto``
    faiss on GPU if faiss sees one, else torch on CUDA if available, else faiss-cpu if importable,
    else torch on the CPU: the algorithm then depends on the machine and the installed packages.

Convergence of ``torch`` and ``sklearn`` follows scikit-learn: stop when the labels did not change, or
when the summed squared centroid shift of one iteration is at most ``tol * mean(var(x, axis=0))``.

Shapes: ``x`` is ``(N, D)`` float32 (any float input is cast); labels are ``(N,)`` int64 in
``[0, k)``; centroids ``(k, D)`` float32; inertia is the sum of squared distances of every point to
its centroid (float64 accumulation; ``sklearn``: its ``inertia_``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from s3a.config import KMEANS_BACKENDS, Int, KMeans
from s3a.device import pick_device

log = logging.getLogger(__name__)

BACKENDS = KMEANS_BACKENDS


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
    """

    device: str | None = None
    chunk: Int = Field(16384, ge=1)

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


def _faiss():
    """The faiss module, or None when it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _faiss_gpus() -> int:
    faiss = _faiss()
    if faiss is None or not hasattr(faiss, "get_num_gpus"):
        return 0
    return int(faiss.get_num_gpus())


def resolve_backend(params: KMeansParams) -> str:
    """The backend ``params`` selects, with ``auto`` resolved: ``torch``, ``faiss`` or ``sklearn``."""
    if params.backend != "auto":
        return params.backend
    if _faiss_gpus() > 0:
        return "faiss"
    if pick_device(params.device).type == "cuda":
        return "torch"
    if _faiss() is not None:
        return "faiss"
    return "torch"


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


def _nearest(
    x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row of ``x``, ``chunk`` rows per matmul.

    Args:
        x: ``(N, D)`` float32 points; ``x_sq`` their ``(N,)`` squared norms.
        centroids: ``(k, D)`` float32.

    Returns:
        ``(N,)`` int64 labels and ``(N,)`` float32 squared distances (clamped at 0).
        Only a ``(chunk, k)`` block of distances exists at any time.
    """
    n = x.shape[0]
    c_sq = (centroids * centroids).sum(1)
    labels = torch.empty(n, dtype=torch.int64, device=x.device)
    dist = torch.empty(n, dtype=x.dtype, device=x.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        # ||x||^2 - 2 x.c + ||c||^2; argmin does not need ||x||^2 but the distance does
        block = torch.addmm(c_sq.unsqueeze(0), x[start:stop], centroids.T, beta=1.0, alpha=-2.0)
        best, idx = block.min(dim=1)
        labels[start:stop] = idx
        dist[start:stop] = (best + x_sq[start:stop]).clamp_min_(0)
    return labels, dist


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
        xt = torch.from_numpy(x).to(dev)
        labels, _ = _nearest(xt, _row_sq_norms(xt, chunk), torch.from_numpy(c).to(dev), chunk)
    return labels.cpu().numpy()


# ----------------------------------------------------------------------------------------------------
# torch backend


def _sq_dist_to(x: torch.Tensor, x_sq: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``(m, N)`` squared distances from ``m`` points ``rows`` to all of ``x``."""
    r_sq = (rows * rows).sum(1, keepdim=True)
    return torch.addmm(r_sq + x_sq.unsqueeze(0), rows, x.T, beta=1.0, alpha=-2.0).clamp_min_(0)


def _kmeans_pp(x: torch.Tensor, x_sq: torch.Tensor, k: int, rng: np.random.RandomState) -> torch.Tensor:
    """Greedy k-means++ (scikit-learn's variant): ``(k, D)`` initial centroids drawn from ``x``.

    The random numbers come from ``rng`` (NumPy, on the host) so that a seed gives the same draws on
    every device, and they are drawn as scikit-learn's ``_kmeans_plusplus`` draws them (the first
    centre by ``rng.choice(n, p=uniform)``, then ``rng.uniform(size=trials)`` per centre), so with the
    ``RandomState`` of the same seed the same centres are chosen unless float rounding puts a draw
    on the other side of a boundary; candidate indices are found on the device by a search in the
    float64 cumulative potential.
    """
    n = x.shape[0]
    trials = 2 + int(np.log(k))
    centers = torch.empty((k, x.shape[1]), dtype=x.dtype, device=x.device)
    weights = np.ones(n, dtype=np.float32)  # scikit-learn's unit sample weights, in the data's dtype
    first = int(rng.choice(n, p=weights / weights.sum()))
    centers[0] = x[first]
    closest = _sq_dist_to(x, x_sq, x[first : first + 1])[0].double()
    potential = closest.sum()
    for c in range(1, k):
        r = torch.from_numpy(rng.uniform(size=trials)).to(x.device) * potential
        cand = torch.searchsorted(torch.cumsum(closest, 0), r).clamp_(max=n - 1)
        d = torch.minimum(closest.unsqueeze(0), _sq_dist_to(x, x_sq, x[cand]).double())
        pots = d.sum(1)
        best = int(torch.argmin(pots))
        closest, potential = d[best], pots[best]
        centers[c] = x[cand[best]]
    return centers


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


def _lloyd(
    x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor, max_iter: int, tol: float, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Lloyd iterations from ``centroids``; returns labels, centroids, inertia, iterations."""
    k = centroids.shape[0]
    prev = None
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        labels, dist = _nearest(x, x_sq, centroids, chunk)
        sums, counts = _centroid_sums(x, labels, k, chunk)
        new = _reseed_empty(x, labels, dist, sums, counts, centroids)
        shift = float(((new.double() - centroids.double()) ** 2).sum())
        centroids = new
        if prev is not None and torch.equal(labels, prev):
            break  # strict convergence: the new centroids equal the old ones
        if shift <= tol:
            break
        prev = labels
    # final labels and inertia against the final centroids (after a strict convergence they are unchanged)
    labels, dist = _nearest(x, x_sq, centroids, chunk)
    inertia = float(dist.double().sum())
    return labels, centroids, inertia, n_iter


def _kmeans_torch(x: np.ndarray, k: int, params: KMeansParams, progress: bool) -> KMeansResult:
    dev = pick_device(params.device)
    rng = np.random.RandomState(params.seed)
    tol = _mean_variance(x) * params.tol
    best: tuple | None = None
    with torch.inference_mode():
        xt = torch.from_numpy(x).to(dev)
        x_sq = _row_sq_norms(xt, params.chunk)
        for run in tqdm(range(params.n_init), desc=f"k-means k={k}", disable=not progress):
            init = _kmeans_pp(xt, x_sq, k, rng)
            labels, centroids, inertia, n_iter = _lloyd(xt, x_sq, init, params.max_iter, tol, params.chunk)
            log.debug("k-means restart %d: inertia %.6g after %d iterations", run, inertia, n_iter)
            if best is None or inertia < best[2]:
                best = (labels, centroids, inertia, n_iter)
    labels, centroids, inertia, n_iter = best
    return KMeansResult(
        labels=labels.cpu().numpy().astype(np.int64),
        centroids=centroids.cpu().numpy().astype(np.float32),
        inertia=inertia,
        n_iter=n_iter,
        backend=f"torch:{dev.type}",
    )


# ----------------------------------------------------------------------------------------------------
# faiss and sklearn backends


def _kmeans_faiss(x: np.ndarray, k: int, params: KMeansParams) -> KMeansResult:
    faiss = _faiss()
    if faiss is None:
        raise ValueError("KMeansParams.backend='faiss' but faiss is not installed (pip install faiss-cpu)")
    n, d = x.shape
    gpu = _faiss_gpus() > 0
    options = {
        "niter": params.max_iter,
        "nredo": params.n_init,
        "seed": params.seed,
        "gpu": gpu,
        "verbose": False,
        "min_points_per_centroid": 1,
        "max_points_per_centroid": n // k + 1,  # train on every point, as the other backends do
    }
    cp = faiss.ClusteringParameters()
    if hasattr(cp, "init_method") and hasattr(faiss, "ClusteringInitMethod_KMEANS_PLUS_PLUS"):
        options["init_method"] = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS  # faiss >= 1.13
    if hasattr(cp, "early_stop_threshold"):
        options["early_stop_threshold"] = float(params.tol)  # relative change of the objective
    km = faiss.Kmeans(d, k, **options)
    km.train(x)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    _, labels = km.index.search(x, 1)
    labels = labels[:, 0].astype(np.int64)
    inertia = float(((x - centroids[labels]) ** 2).sum(1, dtype=np.float64).sum())
    # iteration_stats holds every restart's iterations back to back; report the mean per restart
    n_iter = max(1, round(len(km.iteration_stats) / params.n_init))
    return KMeansResult(labels, centroids, inertia, n_iter, "faiss-gpu" if gpu else "faiss-cpu")


def _kmeans_sklearn(x: np.ndarray, k: int, params: KMeansParams) -> KMeansResult:
    from sklearn.cluster import KMeans

    km = KMeans(
        n_clusters=k, n_init=params.n_init, max_iter=params.max_iter, tol=params.tol, random_state=params.seed
    ).fit(x)
    return KMeansResult(
        labels=km.labels_.astype(np.int64),
        centroids=np.ascontiguousarray(km.cluster_centers_, dtype=np.float32),
        inertia=float(km.inertia_),
        n_iter=int(km.n_iter_),
        backend="sklearn",
    )


# ----------------------------------------------------------------------------------------------------
# public entry points


def kmeans(x: np.ndarray, k: int, params: KMeansParams | None = None, progress: bool = False) -> KMeansResult:
    """K-means (Lloyd, k-means++ init, best of ``n_init``) of ``x`` into ``k`` clusters.

    Args:
        x: ``(N, D)`` points (cast to float32), Euclidean distances on them as given.
        k: number of clusters, ``1 <= k <= N``.
        params: backend and iteration settings (defaults: the official 5.1 call).
        progress: show a tqdm bar over the restarts (``torch`` backend).

    Returns:
        :class:`KMeansResult`; deterministic for a given ``seed`` and backend.

    Raises:
        ValueError: ``k`` outside ``[1, N]``, a malformed ``x`` or an unavailable backend.
    """
    params = params or KMeansParams()
    x = _as_points(x)
    k = _check_k(k, x.shape[0])
    backend = resolve_backend(params)
    if backend == "torch":
        result = _kmeans_torch(x, k, params, progress)
    elif backend == "faiss":
        result = _kmeans_faiss(x, k, params)
    else:
        result = _kmeans_sklearn(x, k, params)
    log.info(
        "k-means k=%d on %d x %d (%s): inertia %.6g, %d iterations",
        k,
        *x.shape,
        result.backend,
        result.inertia,
        result.n_iter,
    )
    return result


def cluster_embeddings(
    image_ids: np.ndarray, embeddings: np.ndarray, k: int, params: KMeansParams | None = None
) -> pd.DataFrame:
    """The table ``clusters.parquet`` holds: the k-means cluster of every image.

    Args:
        image_ids: ``(N,)`` image identifiers.
        embeddings: ``(N, D)`` image embeddings (unit norm in the pipeline), row ``i`` for ``image_ids[i]``.
        k: number of clusters.
        params: k-means settings.

    Returns:
        DataFrame with columns ``image_id`` (as given) and ``cluster`` (int64 in ``[0, k)``), in input order.
    """
    image_ids = np.asarray(image_ids)
    embeddings = np.asarray(embeddings)
    if image_ids.ndim != 1 or embeddings.ndim != 2 or len(image_ids) != len(embeddings):
        raise ValueError(
            f"image_ids {image_ids.shape} and embeddings {embeddings.shape} must be (N,) and (N, D) "
            "with the same N"
        )
    result = kmeans(embeddings, k, params, progress=True)
    return pd.DataFrame({"image_id": image_ids, "cluster": result.labels.astype(np.int64)})
