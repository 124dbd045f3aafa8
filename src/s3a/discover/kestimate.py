"""Cluster-number estimation (spec 4): silhouette of k-means partitions, searched over an interval.

The official ``a_estimate_k.py`` subsamples the features, runs ``KMeans(n_clusters=K,
random_state=0)`` for the ``K`` its "binary search" proposes, scores each partition with
``sklearn.metrics.silhouette_score`` (Euclidean) and keeps the best ``K`` seen; the authors refined the
interval by hand in three rounds. :func:`estimate_k` does the three rounds in one call;
:func:`silhouette_score` is an exact, chunked (never ``N x N``), float32-block and GPU-capable
silhouette. Unlike the official code, which scores the whole subsample (``O(N^2)``: hours and tens of
GB per K at ImageNet-1K size), each K is scored by default on a fixed sample of
``KSearchParams.silhouette_sample`` points, so the cost of a score does not grow with ``N``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from s3a.config import Int, KSearch
from s3a.device import pick_device
from s3a.discover.cluster import KMeansParams, kmeans

log = logging.getLogger(__name__)


def silhouette_score(
    x: np.ndarray,
    labels: np.ndarray,
    chunk: int = 2048,
    device: str | None = None,
    sample_size: int | None = None,
    seed: int = 0,
) -> float:
    """Mean silhouette coefficient (Euclidean), ``sklearn.metrics.silhouette_score`` to about 1e-6.

    For every point ``i`` of cluster ``C``: ``a(i)`` is the mean distance to the ``|C| - 1`` other
    points of ``C``, ``b(i)`` the smallest mean distance to the points of another cluster, and
    ``s(i) = (b - a) / max(a, b)``; ``s(i) = 0`` when ``|C| = 1`` (as scikit-learn does).

    Computed in blocks of ``chunk`` points: the ``(n, chunk)`` float32 distances from all ``n`` scored
    points to the block (one matmul on the centred data, which keeps the ``|x|^2 + |y|^2 - 2 x.y``
    expansion accurate), then the per-cluster sums ``(K, chunk)`` by an ``index_add_``; per-point
    ratios and the mean are taken in float64. Memory beyond the (sampled) input is one float32 centred
    copy of it plus ``4 * n * chunk`` bytes per block; no ``n x n`` matrix and no float64 copy of the
    points is formed. Time is ``O(n^2 D)``: score a bounded ``sample_size`` on large inputs (10,000
    points: about 2e-4 to 3e-3 from the exact value at a silhouette of 0.23).

    Args:
        x: ``(N, D)`` points.
        labels: ``(N,)`` cluster labels (any integers; relabelled internally).
        chunk: points per block.
        device: torch device; ``None`` picks ``cuda`` when present.
        sample_size: score a random subset of this many points (the same subset scikit-learn's
            ``sample_size=..., random_state=seed`` draws); ``None`` scores all.
        seed: seeds the subset.

    Returns:
        The mean of ``s(i)`` over the (sampled) points.

    Raises:
        ValueError: fewer than 2 or more than ``N - 1`` distinct labels, mismatched lengths, bad chunk.
    """
    x = np.asarray(x)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.ndim != 1 or len(x) != len(labels):
        raise ValueError(f"x {x.shape} and labels {labels.shape} must be (N, D) and (N,) with one N")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if sample_size is not None:
        idx = np.random.RandomState(seed).permutation(len(x))[:sample_size]
        x, labels = x[idx], labels[idx]
    n = len(x)
    _, inv = np.unique(labels, return_inverse=True)
    n_labels = int(inv.max()) + 1 if n else 0
    if not 2 <= n_labels <= n - 1:
        raise ValueError(
            f"silhouette needs 2 <= number of labels <= N - 1; got {n_labels} labels for N={n} points"
        )
    dev = pick_device(device)
    # the mean is accumulated in float64 without a float64 copy; the centred copy is float32
    centred = np.array(x, dtype=np.float32, order="C", copy=True)
    centred -= x.mean(0, dtype=np.float64).astype(np.float32)
    with torch.inference_mode():
        xt = torch.from_numpy(centred).to(dev)
        x_sq = (xt * xt).sum(1)
        lab = torch.from_numpy(inv.astype(np.int64)).to(dev)
        freq = torch.bincount(lab, minlength=n_labels).double()
        total = torch.zeros((), dtype=torch.float64, device=dev)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            # (n, B) float32 distances from every point to the block: |x|^2 + |y|^2 - 2 x.y, in place
            d = (xt @ xt[start:stop].T).mul_(-2.0)
            d.add_(x_sq.unsqueeze(1)).add_(x_sq[start:stop].unsqueeze(0)).clamp_min_(0).sqrt_()
            cols = torch.arange(stop - start, device=dev)
            d[start + cols, cols] = 0.0  # a point's distance to itself, exactly
            sums = torch.zeros((n_labels, stop - start), dtype=d.dtype, device=dev)
            sums.index_add_(0, lab, d)  # (K, B): summed distances of each block point to each cluster
            del d
            sums = sums.double()
            own = lab[start:stop]
            own_freq = freq[own]
            intra = sums[own, cols] / (own_freq - 1).clamp_min(1)
            sums /= freq.unsqueeze(1)
            sums[own, cols] = torch.inf
            inter = sums.min(0).values
            sil = (inter - intra) / torch.maximum(intra, inter)
            sil = torch.nan_to_num(sil)  # a == b == 0 (duplicates)
            sil = torch.where(own_freq > 1, sil, torch.zeros_like(sil))
            total += sil.sum()
    return float(total) / n


class KSearchParams(KSearch):
    """Settings of :func:`estimate_k`: the config block :class:`s3a.config.KSearch` (spec 4; defaults
    are the official ones) and the silhouette block size.

    Attributes:
        lo: smallest K searched (>= 2, the silhouette needs two clusters).
        hi: largest K searched in round 1 (capped at ``n_sub - 1``).
        rounds: refinement rounds (official: 3; see :func:`estimate_k`).
        min_sample: subsample at least this many points (all when ``N`` is smaller).
        sample_fraction: ... or this fraction of ``N`` when larger.
        seed: the subsample is ``RandomState(seed).permutation(N)[:n_sub]`` (official: 43).
        kmeans: k-means of every K tried. The official code calls ``KMeans(n_clusters=K,
            random_state=0)`` with the scikit-learn defaults of its time: ``n_init=10`` k-means++
            runs, ``max_iter=300``, ``tol=1e-4`` (scikit-learn >= 1.4 would run 1, spec 10.14). The
            default here is that call, on the ``torch`` backend (the same greedy k-means++ and Lloyd
            on every machine, see :mod:`s3a.discover.cluster`).
        silhouette_sample: score each partition on the first this many points of the subsample (a
            uniform random sample, the same points for every K), so the cost of a score does not
            grow with ``N``: ``O(m^2 D)`` time and ``4 * m * silhouette_chunk`` bytes per block for
            ``m`` points. Default 20,000 (10,000 points are measured to be 2e-4 to 3e-3 from the
            exact silhouette of 0.23; the error falls as ``1 / sqrt(m)``). ``None``: all of the
            subsample, as the official code does (``O(N^2)``: hours per K at ImageNet-1K size).
        silhouette_chunk: points per silhouette block.
    """

    kmeans: KMeansParams = Field(default_factory=lambda: KMeansParams(**KSearch().kmeans.model_dump()))
    silhouette_chunk: Int = Field(2048, ge=1)

    @model_validator(mode="after")
    def _interval(self) -> KSearchParams:
        if self.hi < self.lo:
            raise ValueError(f"KSearchParams.hi ({self.hi}) must be >= lo ({self.lo})")
        return self


def search_interval(
    score_fn: Callable[[int], float], lo: int, hi: int, cache: dict[int, float] | None = None
) -> list[tuple[int, float]]:
    """Spec 4's GCD-style search of the best integer ``k`` in ``[lo, hi]`` (higher score is better).

    Evaluate ``lo``, ``mid = lo + (hi - lo) // 2`` and ``hi``; then ``floor(log2(hi - lo))`` times: if
    ``score(hi) > score(lo)`` then ``lo := mid`` else ``hi := mid`` (carrying the score), and evaluate the
    new midpoint. Stops early once ``hi - lo < 2`` (the midpoint would repeat a bound).

    The midpoint's own score is never compared: ``score(hi) > score(lo)`` stands for "the peak lies
    right of the midpoint", which holds for scores symmetric about their peak (then the best ``k``
    seen is within one of the peak) but not in general; on a skewed score the search can drift away
    from the peak, which the three rounds of :func:`estimate_k` partly make up for.

    Args:
        score_fn: ``k -> score``; called at most once per ``k``.
        lo, hi: the interval, ``lo <= hi``.
        cache: ``k -> score`` already known (shared across calls, updated in place); a cached ``k``
            is listed in the result but not recomputed.

    Returns:
        Every ``(k, score)`` the search looked at, each ``k`` once, in the order first looked at.
    """
    if lo > hi:
        raise ValueError(f"search_interval needs lo <= hi, got [{lo}, {hi}]")
    cache = {} if cache is None else cache
    seen: dict[int, float] = {}

    def score(k: int) -> float:
        if k not in cache:
            cache[k] = float(score_fn(k))
        if k not in seen:
            seen[k] = cache[k]
        return cache[k]

    if lo == hi:
        score(lo)
        return list(seen.items())
    mid = lo + (hi - lo) // 2
    s_lo, s_mid, s_hi = score(lo), score(mid), score(hi)
    for _ in range(int(math.floor(math.log2(hi - lo)))):
        if s_hi > s_lo:
            lo, s_lo = mid, s_mid
        else:
            hi, s_hi = mid, s_mid
        if hi - lo < 2:
            break
        mid = lo + (hi - lo) // 2
        s_mid = score(mid)
    return list(seen.items())


def _best(evaluated: list[tuple[int, float]]) -> int:
    """The ``k`` of the highest score; ties go to the smaller ``k``."""
    return min(evaluated, key=lambda ks: (-ks[1], ks[0]))[0]


def subsample(n: int, params: KSearchParams) -> np.ndarray:
    """Indices of the search subsample: ``RandomState(seed).permutation(n)`` cut at
    ``min(n, max(min_sample, floor(sample_fraction * n)))``."""
    n_sub = min(n, max(params.min_sample, int(math.floor(params.sample_fraction * n))))
    return np.random.RandomState(params.seed).permutation(n)[:n_sub]


def estimate_k(
    x: np.ndarray, params: KSearchParams | None = None, progress: bool = True
) -> tuple[int, pd.DataFrame]:
    """Estimate the number of clusters of ``x`` (spec 4, "search mode other").

    Rounds, each a :func:`search_interval` whose ``K`` scores are the silhouette of a
    :func:`~s3a.discover.cluster.kmeans` partition of the subsample (:func:`subsample`):

    1. ``[lo, min(hi, m - 1)]`` -> ``K1``, the best ``K`` seen in round 1 (``m``: the points scored,
       ``min(n_sub, silhouette_sample)``);
    2. ``[lo, K1]`` -> ``K2``, the best seen in round 2;
    3. ``[K2, (K1 + K2) // 2]`` (bounds sorted) -> ``K3``, the best seen in round 3;
    r > 3. ``[K_{r-1}, (K_{r-2} + K_{r-1}) // 2]`` likewise.

    A round whose interval is a single ``K`` is skipped (its result is the previous round's). Scores are
    cached, so no ``K`` is clustered twice, and every round contains the previous best, hence the
    estimate (the last round's best) is also the best ``K`` seen over all rounds.

    Cost per ``K``: the k-means of the ``n_sub`` subsample points, then a silhouette of ``m`` of them
    (``O(m^2 D)``, independent of ``N`` with the default ``silhouette_sample``). Memory: the features,
    the float32 subsample (``n_sub <= N`` rows, as the official code clusters), the k-means working
    set (``O(n_sub)`` labels and distances, ``chunk * K`` floats per block) and the silhouette's
    float32 ``m x D`` copy and ``m x silhouette_chunk`` block; no float64 copy of the points. At
    ImageNet-1K size (``N`` = 1.28M, ``D`` = 768, ``m`` = 20,000): about 2 GB of subsample and 0.2 GB
    of silhouette work space beyond the 3.9 GB of features.

    Args:
        x: ``(N, D)`` features (unit-norm CLIP embeddings in the pipeline).
        params: search settings.
        progress: a tqdm bar over the K evaluated.

    Returns:
        ``(K, table)``; ``table`` has columns ``round`` (1-based), ``k`` and ``silhouette``, one row per
        ``K`` each round looked at, in order (a ``K`` reused from an earlier round is listed again).
    """
    params = params or KSearchParams()
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be a 2-D (N, D) array, got shape {x.shape}")
    idx = subsample(len(x), params)
    xs = np.ascontiguousarray(x[idx], dtype=np.float32)
    n_sub = len(xs)
    # the silhouette scores the first m subsample points (a uniform sample: the subsample is a
    # random permutation), the same points for every K; a view, not a copy
    m = n_sub if params.silhouette_sample is None else min(n_sub, params.silhouette_sample)
    hi = min(params.hi, m - 1)
    if hi < params.lo:
        raise ValueError(
            f"cannot search K in [{params.lo}, {params.hi}] with {m} points scored ({n_sub} clustered): "
            f"K must be <= N - 1 = {m - 1}"
        )
    log.info(
        "estimate_k: %d of %d points clustered, silhouette on %d, K in [%d, %d], %d rounds",
        n_sub,
        len(x),
        m,
        params.lo,
        hi,
        params.rounds,
    )

    bar = tqdm(desc="estimate_k", unit="K", disable=not progress)

    def score(k: int) -> float:
        labels = kmeans(xs, k, params.kmeans).labels
        s = silhouette_score(xs[:m], labels[:m], chunk=params.silhouette_chunk, device=params.kmeans.device)
        log.info("estimate_k: K=%d silhouette %.6f", k, s)
        bar.update(1)
        bar.set_postfix(k=k, silhouette=f"{s:.4f}")
        return s

    cache: dict[int, float] = {}
    rows: list[tuple[int, int, float]] = []
    bests: list[int] = []
    try:
        for r in range(1, params.rounds + 1):
            if r == 1:
                a, b = params.lo, hi
            elif r == 2:
                a, b = params.lo, bests[-1]
            else:
                a, b = bests[-1], (bests[-2] + bests[-1]) // 2
            a, b = min(a, b), max(a, b)
            if r > 1 and a == b:
                log.info("estimate_k: round %d interval [%d, %d] is degenerate, skipped", r, a, b)
                bests.append(bests[-1])
                continue
            evaluated = search_interval(score, a, b, cache)
            rows += [(r, k, s) for k, s in evaluated]
            bests.append(_best(evaluated))
            log.info("estimate_k: round %d on [%d, %d] -> K=%d", r, a, b, bests[-1])
    finally:
        bar.close()
    table = pd.DataFrame(rows, columns=["round", "k", "silhouette"]).astype(
        {"round": "int64", "k": "int64", "silhouette": "float64"}
    )
    return bests[-1], table
