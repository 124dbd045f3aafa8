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
    stable order, so the run is reproducible); best of ``n_init`` runs by inertia. The restarts run
    ``restart_batch`` at a time as one batched computation (their k-means++ candidates and their
    Lloyd distances each one matmul), with the result of one restart after the other (tested).
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

The ``torch`` backend and the parameters live in :mod:`s3a.discover.kmeans_torch`.

Shapes: ``x`` is ``(N, D)`` float32 (any float input is cast); labels are ``(N,)`` int64 in
``[0, k)``; centroids ``(k, D)`` float32; inertia is the sum of squared distances of every point to
its centroid (float64 accumulation; ``sklearn``: its ``inertia_``).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from s3a.config import KMEANS_BACKENDS
from s3a.device import pick_device
from s3a.discover.kmeans_torch import (  # noqa: F401 (re-exported: cluster was their home)
    KMeansParams,
    KMeansResult,
    _as_points,
    _check_k,
    _kmeans_pp,
    _kmeans_pp_runs,
    _kmeans_torch,
    _lloyd,
    _lloyd_runs,
    _mean_variance,
    _nearest_runs,
    assign_nearest,
)

log = logging.getLogger(__name__)

BACKENDS = KMEANS_BACKENDS


# ----------------------------------------------------------------------------------------------------
# backends


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
