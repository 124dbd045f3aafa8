"""CDUL's pseudo-label initialisation (spec 5, rule ``init_pseudolabels``).

:func:`view_scores` turns the global and tile embeddings of each image into softmax scores over the
label set (``S_g`` and the tile maximum, minimum and mean); :func:`init_pseudolabels` pairs the two
views by image id (:func:`s3a.multilabel.views.tables.align_views`) and writes the ``ml/pseudo/{split}``
table (:func:`s3a.multilabel.aggregate.scores_table`, with ``S_final`` under the configured ζ, λ).
The aggregation itself is :mod:`s3a.multilabel.aggregate`, shared with the open vocabulary.

Cost at full scale (COCO train 82k images, C = 80, M = 9, D = 512): one ``(chunk·M, D) x (D, C)``
product per chunk, ~3 GFLOP in all (seconds on a CPU); memory ``chunk · M · C`` float64 per chunk
(4096 x 9 x 80: 24 MB) plus the four ``(N, C)`` float64 outputs, ``32 · N · C`` bytes (COCO train
4 x 53 MB; the 120k-image x 80-label reference size 4 x 77 MB). With the 20K-name vocabulary use the
open vocabulary (top-k per view), never these dense ``(N, C)`` tables.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from s3a.multilabel.aggregate import PseudoParams, ViewScores, label_softmax, logit_scale, scores_table
from s3a.multilabel.views.tables import align_views

__all__ = [
    "view_scores",
    "init_pseudolabels",
]


def view_scores(
    global_emb: np.ndarray,
    tile_emb: np.ndarray,
    classifier: np.ndarray,
    params: PseudoParams = PseudoParams(),
) -> ViewScores:
    """Softmax label scores of the global view and the tile reductions, in chunks of images; the
    four ``(N, C)`` outputs are float64 (``32 · N · C`` bytes; module docstring).

    Args:
        global_emb: ``(N, D)`` unit global embeddings.
        tile_emb: ``(N, M, D)`` unit tile embeddings (rows aligned with ``global_emb``).
        classifier: ``(C, D)`` unit label text embeddings ``W``.
    """
    n, m, d = tile_emb.shape
    if global_emb.shape != (n, d) or classifier.shape[1] != d:
        raise ValueError(
            f"shapes disagree: global {global_emb.shape}, tiles {tile_emb.shape}, W {classifier.shape}"
        )
    scale = logit_scale(params.temperature)
    w = np.asarray(classifier, dtype=np.float32).T
    c = w.shape[1]
    out = {k: np.empty((n, c), np.float64) for k in ("g", "a", "b", "m")}
    for s in range(0, n, params.chunk):
        e = min(n, s + params.chunk)
        out["g"][s:e] = label_softmax(np.asarray(global_emb[s:e], np.float32) @ w, scale)
        tiles = label_softmax(
            (np.asarray(tile_emb[s:e], np.float32).reshape(-1, d) @ w).reshape(e - s, m, c), scale
        )
        out["a"][s:e] = tiles.max(axis=1)
        out["b"][s:e] = tiles.min(axis=1)
        out["m"][s:e] = tiles.mean(axis=1)
    return ViewScores(out["g"], out["a"], out["b"], out["m"])


def init_pseudolabels(
    image_ids: np.ndarray,
    global_emb: np.ndarray,
    tile_ids: np.ndarray,
    tile_emb: np.ndarray,
    classifier: np.ndarray,
    params: PseudoParams,
) -> pa.Table:
    """Rule ``init_pseudolabels``: the ``ml/pseudo/{split}`` table
    (:func:`~s3a.multilabel.aggregate.scores_table`) from ``embed/{split}`` (``image_ids (N,)``,
    ``global_emb (N, D)``), ``ml/tiles/{split}`` (``tile_ids (N,)``, ``tile_emb (N, M, D)``) and
    ``W`` ``(C, D)``; rows by ``image_id`` (:func:`align_views`)."""
    ids, glob, tiles = align_views(image_ids, global_emb, tile_ids, tile_emb)
    return scores_table(ids, view_scores(glob, tiles, classifier, params), params)
