"""Open-vocabulary label discovery by cluster vote (spec 8; ``openvocab.discovery: cluster_vote``).

The S3A analogue of discovering a dataset's label set, on *views* instead of images: every view
(each of an image's M tiles, and/or its global view) is a point ``z`` ``(D,)``.

1. k-means of the views into ``n_labels`` clusters (:func:`s3a.discover.cluster.kmeans`, the
   ``discover.kmeans`` settings), on every view or on a seeded sample of at most ``max_points``;
2. each view's top-1 vocabulary name (:func:`s3a.classify.zero_shot`, chunked) is its vote;
3. vote -> Hungarian (one distinct name per cluster) -> re-assignment of every view to its best
   name among those selected, ``vote.n_iter`` times (:func:`s3a.discover.vote.cluster_vote`).

The discovered label set is the names that hold at least one view after the last re-assignment
(at most ``n_labels``), in the columns of :func:`s3a.multilabel.openvocab.discovery.discover_frequency`
(``rank, vocab_index, score_sum, n_images``) so :func:`~s3a.multilabel.openvocab.hierarchy.discovery_metrics`
and the ``label_set.parquet`` writer take either. Here ``score_sum`` is the number of views that
hold the name (one vote each) and ``n_images`` the images with at least one such view.

Cost (``P`` views, ``V`` names, ``k = n_labels``): the top-1 pass is ``2·P·V·D`` FLOP in
``(8,192, V)`` chunks — never a ``P x V`` matrix; k-means ``n_init · iterations · 2·P·k·D``; each
vote iteration ``2·P·k·D`` plus a ``k x k'`` Hungarian. Memory: the ``(P, D)`` float32 points (the
tiles alone are a view of the tile array; with the global view too, a copy). ImageNet-1K train
with 9 tiles and the global view is 12.8M views (26 GB at D = 512) and ~260 TFLOP of top-1: pass
``max_points`` (e.g. 1M views, 2 GB) to discover from a sample.

The other discovery, ``frequency``, is :func:`discover_frequency` (the n names with the largest
``Σ_i score``); :func:`openvocab_labels` is the rule ``openvocab_labels``, which runs the configured
one and writes ``ml/openvocab/label_set.parquet`` (columns :data:`DISCOVERED_COLUMNS`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from s3a.multilabel.aggregate import PseudoParams
from s3a.multilabel.openvocab.scores import image_scores, vocab_rows

if TYPE_CHECKING:  # torch is imported by the cluster vote only: the other discoveries run without it
    from s3a.discover.cluster import KMeansParams
    from s3a.discover.vote import VoteParams

__all__ = [
    "view_points",
    "discover_cluster_vote",
    "openvocab_labels",
    "discover_frequency",
    "DISCOVERED_COLUMNS",
]

log = logging.getLogger(__name__)


def view_points(global_emb: np.ndarray | None, tile_emb: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The views of every image as points: ``(points (P, D), image (P,) int64 row of the image)``.

    Args:
        global_emb: ``(N, D)`` global embeddings, or ``None``.
        tile_emb: ``(N, M, D)`` tile embeddings, or ``None``. Tiles alone are reshaped without a
            copy; with both, each image's global view comes first, then its tiles.
    """
    if global_emb is None and tile_emb is None:
        raise ValueError("cluster-vote discovery needs global or tile embeddings (got neither)")
    if tile_emb is None:
        return np.asarray(global_emb), np.arange(len(global_emb), dtype=np.int64)
    n, m, d = tile_emb.shape
    if global_emb is None:
        return np.asarray(tile_emb).reshape(n * m, d), np.repeat(np.arange(n, dtype=np.int64), m)
    if global_emb.shape != (n, d):
        raise ValueError(f"global embeddings {global_emb.shape} and tiles {tile_emb.shape} disagree")
    points = np.concatenate([np.asarray(global_emb)[:, None, :], np.asarray(tile_emb)], axis=1)
    return points.reshape(n * (m + 1), d), np.repeat(np.arange(n, dtype=np.int64), m + 1)


def discover_cluster_vote(
    global_emb: np.ndarray | None,
    tile_emb: np.ndarray | None,
    vocab_classifier: np.ndarray,
    n_labels: int,
    kmeans_params: KMeansParams | None = None,
    vote_params: VoteParams | None = None,
    max_points: int | None = None,
    device: str | None = None,
) -> pd.DataFrame:
    """Label discovery by k-means of the views and the cluster vote of ``s3a.discover`` (module
    docstring).

    Args:
        global_emb: ``(N, D)`` unit global embeddings, or ``None`` (tiles only).
        tile_emb: ``(N, M, D)`` unit tile embeddings, or ``None`` (global views only).
        vocab_classifier: ``(V, D)`` unit vocabulary text embeddings; row ``v`` is ``vocab_index`` v,
            as in :func:`s3a.multilabel.openvocab.scores.view_topk`.
        n_labels: k, the clusters and so the most names discovered (``openvocab.n_labels``).
        kmeans_params: k-means settings (``None``: the official 5.1 call, ``discover.kmeans``).
        vote_params: vote iterations (``None``: 3, ``discover.vote``).
        max_points: fit k-means on and vote with a seeded random sample (``kmeans_params.seed``) of
            at most this many views; ``None``: every view.
        device: torch device of the top-1, k-means and re-assignment passes (``None``: ``cuda`` when
            present).

    Returns:
        ``rank, vocab_index, score_sum, n_images`` (the columns of ``discover_frequency``): the names
        holding a view after the last re-assignment, by views held (``score_sum``), then vocab_index.

    Raises:
        ValueError: ``n_labels`` outside ``[1, min(views, V)]``, shapes that disagree.
    """
    points, image = view_points(global_emb, tile_emb)
    if points.shape[1] != vocab_classifier.shape[1]:
        raise ValueError(f"views have D={points.shape[1]}, the vocabulary {vocab_classifier.shape}")
    from s3a.classify import zero_shot
    from s3a.discover.cluster import KMeansParams, kmeans
    from s3a.discover.vote import VoteParams, cluster_vote

    kmeans_params = kmeans_params or KMeansParams()
    vote_params = vote_params or VoteParams()
    if max_points is not None and len(points) > max_points:
        keep = np.sort(
            np.random.default_rng(kmeans_params.seed).choice(len(points), max_points, replace=False)
        )
        points, image = points[keep], image[keep]
    if not 1 <= n_labels <= min(len(points), len(vocab_classifier)):
        raise ValueError(
            f"openvocab.n_labels must be in [1, {min(len(points), len(vocab_classifier))}] "
            f"({len(points)} views, {len(vocab_classifier)} names), got {n_labels}"
        )
    params = kmeans_params.model_copy(update={"device": kmeans_params.device or device})
    partition = kmeans(points, n_labels, params).labels
    top1, _ = zero_shot(points, vocab_classifier, device=device)
    result = cluster_vote(points, vocab_classifier, partition, vote_params, top1=top1, device=device)
    held = pd.DataFrame({"vocab_index": result.labels.astype(np.int64), "image": image})
    out = held.groupby("vocab_index")["image"].agg(score_sum="size", n_images="nunique").reset_index()
    out = out.sort_values(["score_sum", "vocab_index"], ascending=[False, True], kind="stable")
    out.insert(0, "rank", np.arange(len(out), dtype=np.int64))
    log.info("cluster-vote discovery: %d views in %d clusters -> %d names", len(points), n_labels, len(out))
    return out.astype({"score_sum": np.float64, "n_images": np.int64}).reset_index(drop=True)


DISCOVERED_COLUMNS = ("rank", "vocab_index", "score_sum", "n_images")


def _empty_discovered() -> pd.DataFrame:
    types = {"rank": np.int64, "vocab_index": np.int64, "score_sum": np.float64, "n_images": np.int64}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in types.items()})


def openvocab_labels(
    views: pd.DataFrame,
    openvocab: Mapping,
    pseudo: Mapping | None = None,
    global_emb: np.ndarray | None = None,
    tile_emb: np.ndarray | None = None,
    vocab_ids: np.ndarray | None = None,
    vocab_classifier: np.ndarray | None = None,
    kmeans: Mapping | None = None,
    vote: Mapping | None = None,
    device: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rule ``openvocab_labels``: ``(scores, discovered)``.

    ``scores`` = :func:`~s3a.multilabel.openvocab.scores.image_scores` of the view table (M = the tile views
    it holds) under the ``multilabel.pseudo`` aggregation. ``discovered`` (:data:`DISCOVERED_COLUMNS`)
    by ``openvocab.discovery``: ``none`` (no rows), ``frequency``
    (:func:`~s3a.multilabel.openvocab.discovery.discover_frequency` of the scores) or ``cluster_vote``
    (:func:`~s3a.multilabel.openvocab.discovery.discover_cluster_vote` on the tile views, ``views: all`` adds
    the global ones; ``max_points``, ``discover.kmeans``/``discover.vote``), ``n_labels`` names.

    Raises:
        ValueError: unknown discovery, discovery without ``n_labels``, cluster_vote without embeddings.
    """
    ids = views["view"].to_numpy()
    n_tiles = int(ids.max()) + 1 if len(ids) and ids.max() >= 0 else 0
    scores = image_scores(views, n_tiles, PseudoParams(**(pseudo or {})))
    how, n_labels = openvocab.get("discovery", "none"), openvocab.get("n_labels")
    if how == "none":
        return scores, _empty_discovered()
    if how not in ("frequency", "cluster_vote"):
        raise ValueError(f"openvocab.discovery must be none, frequency or cluster_vote, got {how!r}")
    if n_labels is None:
        raise ValueError(f"openvocab.discovery {how} needs openvocab.n_labels (the names to discover)")
    if how == "frequency":
        return scores, discover_frequency(scores, int(n_labels))
    if vocab_ids is None or vocab_classifier is None or tile_emb is None:
        raise ValueError("cluster_vote discovery needs the tile embeddings and the vocabulary classifier")
    from s3a.discover.cluster import KMeansParams
    from s3a.discover.vote import VoteParams

    vocab_ids, vocab_classifier = vocab_rows(vocab_ids, vocab_classifier)
    which = openvocab.get("views", "tiles")
    if which not in ("tiles", "all"):
        raise ValueError(f"openvocab.views must be tiles or all, got {which!r}")
    found = discover_cluster_vote(
        global_emb if which == "all" else None,
        tile_emb,
        vocab_classifier,
        int(n_labels),
        KMeansParams(**(kmeans or {})),
        VoteParams(**(vote or {})),
        openvocab.get("max_points"),
        device,
    )
    found["vocab_index"] = vocab_ids[found["vocab_index"].to_numpy()]
    return scores, found


def discover_frequency(scores: pd.DataFrame, n_labels: int) -> pd.DataFrame:
    """Label discovery by frequency: the ``n_labels`` names with the largest ``Σ_i score`` (ties by
    vocab_index): ``rank, vocab_index, score_sum, n_images`` (images keeping the name)."""
    if n_labels < 1:
        raise ValueError(f"openvocab.n_labels must be >= 1, got {n_labels}")
    agg = scores.groupby("vocab_index")["score"].agg(score_sum="sum", n_images="count").reset_index()
    agg = agg.sort_values(["score_sum", "vocab_index"], ascending=[False, True], kind="stable").head(n_labels)
    agg.insert(0, "rank", np.arange(len(agg), dtype=np.int64))
    return agg.reset_index(drop=True)
