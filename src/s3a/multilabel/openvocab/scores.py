"""Open-vocabulary label scores over the S3A vocabulary (spec 8; rule ``openvocab_scores``).

1. :func:`view_topk` — per view (the global view and each of the M tiles) ``softmax(τ · V z)`` over
   all |V| = 20,071 vocabulary names, keeping the top-k (``openvocab.topk_per_view``, 20): the long
   table ``image_id, view (int8, -1 = global), vocab_index, prob (float64)`` of
   ``ml/openvocab/{split}.parquet`` (:func:`openvocab_scores`, views read by :func:`read_views`).
   Probabilities stay float64 here and in every score after it (a float32 probability within 6e-8
   of 1 rounds to 1.0 and ties: :mod:`s3a.multilabel.aggregate`).
2. :func:`image_scores` — per image, the CDUL aggregation of spec 5
   (:func:`s3a.multilabel.aggregate.aggregate`, any ``PseudoParams``) on the union of its kept
   names, a name missing from a view scoring 0 there (so ``β`` is 0 unless all M tiles kept the
   name): long ``image_id, vocab_index, s_global, s_agg, score`` (float64).

Label discovery is :mod:`s3a.multilabel.openvocab.discovery`, the evaluation against a dataset's
labels :mod:`s3a.multilabel.openvocab.hierarchy`.

Never an images x names matrix beyond one chunk: :func:`view_topk` holds ``chunk · (M+1) · |V|``
softmax values (chunk 32, M 9: 6.4M float64, 51 MB), :func:`image_scores` works on ``image_chunk``
images of the long table at a time. Full scale (ImageNet-1K train, 1.28M images, M = 9, k = 20):
256M long rows (~5.6 GB Parquet before compression), ``1.28M · 10 · 20,071 · 512 · 2`` ≈ 260 TFLOP
of products (minutes on a GPU, hours on a CPU).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from s3a.io import read_embeddings
from s3a.multilabel.aggregate import PseudoParams, ViewScores, aggregate, label_softmax, logit_scale
from s3a.multilabel.views.tables import read_tiles

log = logging.getLogger(__name__)

__all__ = [
    "read_views",
    "openvocab_scores",
    "OV_COLUMNS",
    "SCORE_COLUMNS",
    "GLOBAL_VIEW",
    "view_topk",
    "image_scores",
]


def read_views(
    embeddings_path: str | Path | None, tiles_path: str | Path | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(image_ids (N,), global (N, D) | None, tiles (N, M, D) | None)`` of one split from
    ``embed/{split}`` and ``ml/tiles/{split}`` (either path may be ``None``), restricted to the images
    present in both, in the embeddings' order. Memory: the float32 arrays (NUS-WIDE train, 150k
    images, M 9, D 512: 0.3 GB global + 2.8 GB tiles)."""
    if embeddings_path is None and tiles_path is None:
        raise ValueError("read_views needs the global embeddings, the tiles or both")
    g_ids, glob = read_embeddings(embeddings_path) if embeddings_path else (None, None)
    t_ids, tiles = read_tiles(tiles_path) if tiles_path else (None, None)
    if g_ids is None or t_ids is None:
        return (g_ids if t_ids is None else t_ids), glob, tiles
    common = np.isin(g_ids, t_ids)
    if not common.all() or len(t_ids) != len(g_ids):
        log.info("%d images have global and tile embeddings (%d, %d)", common.sum(), len(g_ids), len(t_ids))
    ids = g_ids[common]
    return ids, glob[common], tiles[pd.Index(t_ids).get_indexer(ids)]


def vocab_rows(vocab_ids: np.ndarray, classifier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(vocab_ids)
    return np.asarray(vocab_ids, np.int64)[order], np.asarray(classifier)[order]


def openvocab_scores(
    image_ids: np.ndarray,
    global_emb: np.ndarray,
    tile_emb: np.ndarray | None,
    vocab_ids: np.ndarray,
    vocab_classifier: np.ndarray,
    openvocab: Mapping,
) -> pd.DataFrame:
    """Rule ``openvocab_scores``: :func:`~s3a.multilabel.openvocab.scores.view_topk` with
    ``openvocab.topk_per_view`` and ``openvocab.temperature``; ``vocab_index`` holds the vocabulary
    classifier's ids. Rows: N x (M + 1) x k (ImageNet-scale cost in the module docstring)."""
    vocab_ids, vocab_classifier = vocab_rows(vocab_ids, vocab_classifier)
    table = view_topk(
        image_ids,
        global_emb,
        tile_emb,
        vocab_classifier,
        int(openvocab.get("topk_per_view", 20)),
        openvocab.get("temperature", 100.0),
    )
    table["vocab_index"] = vocab_ids[table["vocab_index"].to_numpy()]
    return table


OV_COLUMNS = ("image_id", "view", "vocab_index", "prob")
SCORE_COLUMNS = ("image_id", "vocab_index", "s_global", "s_agg", "score")
GLOBAL_VIEW = -1


def view_topk(
    image_ids: np.ndarray,
    global_emb: np.ndarray,
    tile_emb: np.ndarray | None,
    vocab_classifier: np.ndarray,
    topk: int = 20,
    temperature: float | str = 100.0,
    chunk: int = 32,
) -> pd.DataFrame:
    """Top-``topk`` vocabulary names of every view (module docstring, step 1).

    Args:
        image_ids: ``(N,)`` ids of the rows.
        global_emb: ``(N, D)`` unit global embeddings.
        tile_emb: ``(N, M, D)`` unit tile embeddings, or ``None`` (global view only).
        vocab_classifier: ``(V, D)`` unit vocabulary text embeddings (``embed_vocabulary``).
        temperature: τ (``"repro"`` as in :class:`~s3a.multilabel.aggregate.PseudoParams`).
        chunk: images per step; memory ``chunk · (M+1) · V`` float64.

    Returns:
        :data:`OV_COLUMNS` sorted by ``(image_id, view, prob desc)``; ``view`` is -1 for the global
        view, else the tile index.
    """
    n, d = global_emb.shape
    m = 0 if tile_emb is None else tile_emb.shape[1]
    if tile_emb is not None and tile_emb.shape[::2] != (n, d) or vocab_classifier.shape[1] != d:
        tiles = None if tile_emb is None else tile_emb.shape
        raise ValueError(
            f"shapes disagree: global {global_emb.shape}, tiles {tiles}, vocabulary {vocab_classifier.shape}"
        )
    scale = logit_scale(temperature)
    k = min(topk, len(vocab_classifier))
    vt = np.asarray(vocab_classifier, np.float32).T
    views = np.arange(-1, m, dtype=np.int8)
    ids_out, view_out, idx_out, prob_out = [], [], [], []
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        x = np.asarray(global_emb[s:e], np.float32)[:, None, :]
        if m:
            x = np.concatenate([x, np.asarray(tile_emb[s:e], np.float32)], axis=1)
        prob = label_softmax(x.reshape(-1, d) @ vt, scale)  # ((e-s)·(M+1), V)
        top = np.argpartition(-prob, k - 1, axis=1)[:, :k]
        top_p = np.take_along_axis(prob, top, axis=1)
        order = np.argsort(-top_p, axis=1, kind="stable")
        idx_out.append(np.take_along_axis(top, order, axis=1).ravel())
        prob_out.append(np.take_along_axis(top_p, order, axis=1).ravel())
        ids_out.append(np.repeat(np.asarray(image_ids[s:e], np.int64), (m + 1) * k))
        view_out.append(np.tile(np.repeat(views, k), e - s))
    cat = np.concatenate if n else (lambda parts: np.zeros(0))
    return pd.DataFrame(
        {
            "image_id": cat(ids_out).astype(np.int64),
            "view": cat(view_out).astype(np.int8),
            "vocab_index": cat(idx_out).astype(np.int64),
            "prob": cat(prob_out).astype(np.float64),
        }
    )


def _aggregate_chunk(rows: pd.DataFrame, n_tiles: int, params: PseudoParams) -> pd.DataFrame:
    key = ["image_id", "vocab_index"]
    glob = rows[rows["view"] == GLOBAL_VIEW].set_index(key)["prob"].rename("g")
    tiles = rows[rows["view"] != GLOBAL_VIEW].groupby(key)["prob"].agg(["max", "min", "sum", "count"])
    merged = pd.concat([glob, tiles], axis=1).fillna(0.0)
    full = merged["count"].to_numpy() >= n_tiles
    views = ViewScores(
        s_global=merged["g"].to_numpy(np.float64),
        s_alpha=merged["max"].to_numpy(np.float64),
        s_beta=np.where(full, merged["min"].to_numpy(np.float64), 0.0),
        s_mean=merged["sum"].to_numpy(np.float64) / max(n_tiles, 1),
    )
    if n_tiles == 0:  # global view only: the local view is absent, score = S_g
        agg, final = views.s_global, views.s_global
    else:
        agg, final = aggregate(views, params)
    out = merged.index.to_frame(index=False)
    out["s_global"] = views.s_global
    out["s_agg"] = agg
    out["score"] = final
    return out


def image_scores(
    view_table: pd.DataFrame, n_tiles: int, params: PseudoParams | None = None, image_chunk: int = 65536
) -> pd.DataFrame:
    """Per-image vocabulary scores (module docstring, step 2) from a :func:`view_topk` table.

    Args:
        n_tiles: M, the number of tile views (0 when only the global view was kept).
        params: the aggregation's ζ, λ and ``local_reduce`` (``temperature`` was applied upstream;
            ``None``: the defaults).
        image_chunk: images aggregated at a time (memory linear in their rows).

    Returns:
        :data:`SCORE_COLUMNS`, one row per (image, kept name), sorted by (image_id, vocab_index).
    """
    params = params or PseudoParams()
    ids = view_table["image_id"].to_numpy()
    if len(ids) and (np.diff(ids) < 0).any():  # view_topk writes it sorted; others may not
        view_table = view_table.sort_values("image_id", kind="stable")
        ids = view_table["image_id"].to_numpy()
    unique = np.unique(ids)
    parts = []
    for s in range(0, len(unique), image_chunk):
        lo, hi = unique[s], unique[min(len(unique), s + image_chunk) - 1]
        a, b = np.searchsorted(ids, lo, "left"), np.searchsorted(ids, hi, "right")
        parts.append(_aggregate_chunk(view_table.iloc[a:b], n_tiles, params))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in SCORE_COLUMNS})
    out = pd.concat(parts, ignore_index=True).sort_values(["image_id", "vocab_index"], kind="stable")
    return out.astype({"image_id": np.int64, "vocab_index": np.int64}).reset_index(drop=True)[
        list(SCORE_COLUMNS)
    ]
