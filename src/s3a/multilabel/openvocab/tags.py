"""Multi-label tags of an unlabeled photo folder: the names present in each photo, with their scores.

No ground truth anywhere. The rule ``tag_images`` runs :func:`image_tags` on the folder's global
embeddings (``embed_images``), its 3x3 tile embeddings (``embed_tag_tiles``, the ``embed_tiles``
step of :mod:`s3a.multilabel.views.tiles`) and the vocabulary's text classifier (``embed_vocabulary``):

1. **Discovery** of the folder's label set over the whole vocabulary (~20K names), on a seeded sample
   of at most ``sample_images`` photos (:func:`sample_views`; all of them in a smaller folder):
   ``cluster_vote`` (k-means of the views and S3A's vote,
   :func:`s3a.multilabel.openvocab.discovery.discover_cluster_vote`) or ``frequency`` (each view's
   top-k names,
   :func:`~s3a.multilabel.openvocab.scores.view_topk`, aggregated per photo by
   :func:`~s3a.multilabel.openvocab.scores.image_scores`, the names with the largest score sum,
   :func:`~s3a.multilabel.openvocab.discovery.discover_frequency`); at most ``n_labels`` names.
2. **Scores** over the discovered set: CDUL's global + local aggregation (MULTILABEL_SPEC 5) with the
   discovered names as the label set, :func:`s3a.multilabel.aggregate.view_scores` and
   :func:`~s3a.multilabel.aggregate.aggregate` under ``multilabel.pseudo``: a softmax over the C
   discovered names of the whole photo (``S_g``) and of each tile, ``α`` = the max over the tiles,
   ``S_final = ½ (S_g + S_agg + λ |S_g − S_agg|)`` (the mean of both at λ = 0). A name that fills one
   tile but is not the photo's main subject scores about ½.
3. **Tags** (:func:`select_tags`): the names with ``S_final >= threshold``, best first, at most
   ``max_tags`` per photo; a photo where no name reaches the threshold has no tag.

Memory, streamed by image id (:func:`s3a.multilabel.views.tables.iter_view_batches`): the tile table
(``N·M`` rows, sorted by ``(image_id, tile)``) is read ``chunk`` photos at a time and never whole; what
is held besides is the ``(N, D)`` float32 global embeddings, the ``(V, D)`` vocabulary classifier (41 MB
at 20,071 x 512), the discovery sample (``sample_images · (M + 1) · D`` float32: 5,000 photos, 184 MB at
D = 512, and its k-means and top-1 passes) and the tags (at most ``N · max_tags`` rows of 24 bytes). At
100,000 photos, M = 9, D = 512: global 205 MB (and its Arrow table while it is read), tags <= 12 MB, one
chunk of 1,024 photos 19 MB of tiles plus its ``4 · chunk · C`` float64 scores, the tile file read
through an 8 MB buffer; the whole tile table (1.8 GB float32), an ``(N, C)`` score matrix or a long
table of every (photo, name) score is never built. ``benchmarks/bench_tags.py`` measured the scoring at
that size: peak +718 MB streamed against +7,339 MB for the whole-table approach (10.2x), 7.6 s against
34.7 s, the same tags. Time: the discovery's top-1 pass is ``2 · sample · (M+1) · V · D`` FLOP (5,000
photos: 1 TFLOP, about a minute on 2 CPU cores, a second on a GPU); the scores ``2 · N · (M+1) · C ·
D``."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pydantic import Field

from s3a.config import Int, Tags
from s3a.multilabel.aggregate import PseudoParams, aggregate, view_scores
from s3a.multilabel.openvocab.discovery import discover_cluster_vote, discover_frequency
from s3a.multilabel.openvocab.scores import image_scores, view_topk
from s3a.multilabel.views.tables import iter_view_batches

__all__ = [
    "TAG_COLUMNS",
    "TagParams",
    "sample_views",
    "discover_tags",
    "select_tags",
    "score_tags",
    "image_tags",
]

log = logging.getLogger(__name__)
#: the long tags table of ``tags/tags.parquet``: one row per (photo, tag), ``rank`` 0 = best
TAG_COLUMNS = ("image_id", "rank", "vocab_index", "score")


class TagParams(Tags):
    """The config block :class:`s3a.config.Tags` (``names.tags``) and one run-time knob.

    Attributes:
        chunk: photos scored at a time (memory linear in it).
    """

    chunk: Int = Field(1024, ge=1)


def sample_views(
    tiles_path: str,
    global_ids: np.ndarray,
    global_emb: np.ndarray,
    n_images: int,
    seed: int = 0,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded sample of at most ``n_images`` photos with both views: ``(ids (n,), global (n, D),
    tiles (n, M, D))``, ids ascending (``np.random.default_rng(seed)`` over the photos of both files,
    all of them when there are no more). Memory: the sample, and one batch of the stream."""
    tile_ids = np.unique(pq.read_table(tiles_path, columns=["image_id"]).column("image_id").to_numpy())
    both = np.intersect1d(tile_ids, np.asarray(global_ids, np.int64))
    if len(both) > n_images:
        both = np.sort(np.random.default_rng(seed).choice(both, n_images, replace=False))
    parts = list(iter_view_batches(tiles_path, global_ids, global_emb, chunk, keep=both))
    if not parts:
        d = global_emb.shape[1]
        return np.zeros(0, np.int64), np.zeros((0, d), np.float32), np.zeros((0, 0, d), np.float32)
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def discover_tags(
    ids: np.ndarray,
    global_emb: np.ndarray,
    tile_emb: np.ndarray,
    vocab_classifier: np.ndarray,
    params: TagParams,
    pseudo: PseudoParams | None = None,
    kmeans: Mapping | None = None,
    vote: Mapping | None = None,
    device: str | None = None,
) -> pd.DataFrame:
    """The folder's label set (module docstring, step 1) from the views of a sample of photos.

    Args:
        ids: ``(n,)`` photo ids; ``global_emb`` ``(n, D)``, ``tile_emb`` ``(n, M, D)`` unit embeddings.
        vocab_classifier: ``(V, D)`` unit name embeddings; the returned ``vocab_index`` is a row of it.
        pseudo: the aggregation of ``frequency`` discovery (``None``: the defaults).
        kmeans, vote: ``discover.kmeans`` and ``discover.vote`` of ``cluster_vote``.

    Returns:
        ``rank, vocab_index, score_sum, n_images`` (:func:`discover_frequency`'s
        columns), at most ``params.n_labels`` rows, best first; none for no photo.
    """
    from s3a.discover.cluster import KMeansParams
    from s3a.discover.vote import VoteParams

    n, m = len(ids), tile_emb.shape[1] if tile_emb.ndim == 3 else 0
    if n == 0:
        return discover_frequency(pd.DataFrame({"vocab_index": [], "score": []}), 1)
    if params.discovery == "frequency":
        pseudo = pseudo or PseudoParams()
        views = view_topk(
            ids, global_emb, tile_emb, vocab_classifier, params.topk_per_view, pseudo.temperature
        )
        return discover_frequency(image_scores(views, m, pseudo), params.n_labels)
    n_views = n * (m + (params.views == "all"))
    return discover_cluster_vote(
        global_emb if params.views == "all" else None,
        tile_emb,
        vocab_classifier,
        min(params.n_labels, n_views, len(vocab_classifier)),
        KMeansParams(**(kmeans or {})),
        VoteParams(**(vote or {})),
        None,
        device,
    )


def select_tags(
    scores: np.ndarray, threshold: float, max_tags: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tags of each row of ``scores`` ``(n, C)``: the columns scoring ``>= threshold``, best first
    (ties by column), at most ``max_tags``.

    Returns:
        ``(row, column, rank)`` int64 arrays, one entry per tag, rows ascending and ranks 0, 1, ...
    """
    k = min(max_tags, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(scores, order, axis=1) >= threshold  # a prefix of each row
    row, rank = np.nonzero(kept)
    return row.astype(np.int64), order[row, rank].astype(np.int64), rank.astype(np.int64)


def score_tags(
    batches: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]],
    label_classifier: np.ndarray,
    params: TagParams,
    pseudo: PseudoParams | None = None,
) -> pd.DataFrame:
    """Module docstring, steps 2 and 3, one batch of photos at a time.

    Args:
        batches: ``(ids, global (b, D), tiles (b, M, D))`` as :func:`iter_view_batches` yields them.
        label_classifier: ``(C, D)`` unit embeddings of the discovered names (C >= 1).

    Returns:
        :data:`TAG_COLUMNS`, ``vocab_index`` = the row of ``label_classifier``, ``score`` float64.
    """
    pseudo = pseudo or PseudoParams()
    parts = []
    for ids, glob, tiles in batches:
        _, final = aggregate(view_scores(glob, tiles, label_classifier, pseudo), pseudo)
        row, col, rank = select_tags(final, params.threshold, params.max_tags)
        parts.append(
            pd.DataFrame({"image_id": ids[row], "rank": rank, "vocab_index": col, "score": final[row, col]})
        )
    if not parts:
        return pd.DataFrame(
            {c: pd.Series(dtype=np.float64 if c == "score" else np.int64) for c in TAG_COLUMNS}
        )
    return pd.concat(parts, ignore_index=True)


def image_tags(
    embeddings_path: str,
    tiles_path: str,
    vocab_ids: np.ndarray,
    vocab_classifier: np.ndarray,
    params: TagParams,
    pseudo: Mapping | None = None,
    kmeans: Mapping | None = None,
    vote: Mapping | None = None,
    device: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rule ``tag_images``: ``(tags, discovered)`` of a folder (module docstring: steps, memory).

    Args:
        embeddings_path: ``embed/train.parquet`` (``image_id``, ``embedding``).
        tiles_path: the tile table of the same photos (``embed_tag_tiles``).
        vocab_ids: ``(V,)`` ``vocab_index`` of the classifier's rows; ``vocab_classifier`` ``(V, D)``.
        pseudo: ``multilabel.pseudo`` (temperature, zeta, lam, local_reduce).
        kmeans, vote: ``discover.kmeans`` (its ``seed`` also draws the discovery sample), ``discover.vote``.

    Returns:
        ``tags`` (:data:`TAG_COLUMNS`, sorted by image id and rank) and ``discovered`` (``rank,
        vocab_index, score_sum, n_images``), both with the vocabulary's ``vocab_index``.
    """
    from s3a.io import read_embeddings

    pseudo_params = PseudoParams(**(pseudo or {}))
    order = np.argsort(vocab_ids, kind="stable")
    vocab_ids, vocab_classifier = np.asarray(vocab_ids, np.int64)[order], np.asarray(vocab_classifier)[order]
    g_ids, g_emb = read_embeddings(embeddings_path)
    seed = int((kmeans or {}).get("seed", 0))
    sample = sample_views(tiles_path, g_ids, g_emb, params.sample_images, seed, params.chunk)
    found = discover_tags(*sample, vocab_classifier, params, pseudo_params, kmeans, vote, device)
    del sample
    rows = found["vocab_index"].to_numpy(np.int64)
    log.info("tags: %d names discovered (%s)", len(rows), params.discovery)
    tags = score_tags(
        iter_view_batches(tiles_path, g_ids, g_emb, params.chunk) if len(rows) else iter(()),
        vocab_classifier[rows],
        params,
        pseudo_params,
    )
    tags["vocab_index"] = vocab_ids[rows[tags["vocab_index"].to_numpy(np.int64)]]
    found["vocab_index"] = vocab_ids[rows]
    return tags.sort_values(["image_id", "rank"], kind="stable").reset_index(drop=True), found
