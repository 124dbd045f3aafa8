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

from s3a.multilabel.aggregate import PseudoParams, scores_table, view_scores
from s3a.multilabel.views.tables import align_views

__all__ = [
    "init_pseudolabels",
]


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
