"""The global-local aggregation of CDUL (spec 5), its table and its training targets.

Per image, with a softmax over the C names of a label set::

    S_g = softmax(τ · W z)          S_j = softmax(τ · W z_j), j = 1..M (tiles)
    α = max_j S_j   β = min_j S_j   γ = 1[α ≥ ζ]   S_agg = γ ⊙ α + (1 − γ) ⊙ β
    S_final = ½ (S_g + S_agg + λ · |S_g − S_agg|)

:func:`aggregate` computes ``S_agg`` and ``S_final`` from the :class:`ViewScores` (``S_g``, ``α``,
``β`` and the tile mean), so any (ζ, λ, ``local_reduce``) is re-derived without the embeddings.
:func:`scores_table` / :func:`read_scores` are the ``ml/pseudo/{split}`` table;
:func:`pseudo_targets` turns it into the training targets of every learner (``supervision:
pseudo``). Shared by CDUL's pseudo-labels (:mod:`s3a.multilabel.cdul.pseudolabels`), the open
vocabulary (:mod:`s3a.multilabel.openvocab.scores`, on each image's kept names) and the decoder.

``τ`` is the temperature (``100``: CLIP's logit scale) or ``"repro"``: the public CDUL
reimplementation divides cosines by CLIP's *raw* ``logit_scale`` parameter (ln 100 ≈ 4.605), which
leaves every score within a few thousandths of ``1/C``; then every ``ζ ≥ 1/C + ε`` gives
``S_agg = β``.

Precision: every score is a float64 probability, from the softmax to the stored table. At CLIP's
scale of 100 a softmax score within 6e-8 of 1 rounds to exactly 1.0 in float32, so an absent label
that one tile matches strongly ties with the true positives and the ranking (hence every mAP, ties
grouped) is lost: on MULTILABEL_SPEC 11.1's distractor simulation float32 gives mAP(α) 71-73 and
S_final 89-90 where float64 gives the spec's 82-86 and 94-95. A label leading all others by a cosine
gap δ scores about ``1 − e^(−τδ)``: float32 saturates from δ ≈ 0.17 at τ = 100, float64 from
δ ≈ 0.37 (``e^-37 ≈ 1e-16``).

Cost: :func:`aggregate` is elementwise on the ``(N, C)`` float64 matrices (COCO train 82k x 80: 53 MB
each; two outputs). With the 20K-name vocabulary the open-vocabulary path aggregates per image over
its kept names instead, never a dense ``(N, |V|)`` table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = [
    "view_scores",
    "REPRO_SCALE",
    "LOCAL_REDUCTIONS",
    "PseudoParams",
    "logit_scale",
    "label_softmax",
    "ViewScores",
    "aggregate",
    "scores_table",
    "read_scores",
    "pseudo_targets",
]

#: what the CDUL reproduction multiplies cosines by: 1 / CLIP's raw logit_scale parameter ln(100)
REPRO_SCALE = 1.0 / math.log(100.0)
LOCAL_REDUCTIONS = ("cdul", "max", "mean")


@dataclass(frozen=True)
class PseudoParams:
    """Settings of the aggregation (config ``multilabel.pseudo``).

    Attributes:
        temperature: logit scale τ multiplying cosines (``100`` = CLIP's), or ``"repro"`` to divide
            by ln 100 as the CDUL reproduction does (nearly uniform scores; kept to reproduce it).
        zeta: threshold ζ of ``γ = 1[α ≥ ζ]``; 0 gives ``S_agg = α``.
        lam: λ of ``S_final``; 0 = mean of global and local, 1 = max, -1 = min.
        local_reduce: ``cdul`` (the γ rule), ``max`` (``α``; same as ζ = 0) or ``mean`` (tile mean).
        chunk: images per step of :func:`view_scores` (memory ``chunk · M · C`` floats).
    """

    temperature: float | str = 100.0
    zeta: float = 0.0
    lam: float = 0.0
    local_reduce: str = "cdul"
    chunk: int = 4096

    def __post_init__(self) -> None:
        logit_scale(self.temperature)  # validates
        if self.local_reduce not in LOCAL_REDUCTIONS:
            raise ValueError(f"local_reduce must be one of {LOCAL_REDUCTIONS}, got {self.local_reduce!r}")
        if not -1.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must lie in [-1, 1], got {self.lam}")
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")


def logit_scale(temperature: float | str) -> float:
    """The factor multiplying cosines: ``temperature`` itself, or :data:`REPRO_SCALE` for ``"repro"``."""
    if temperature == "repro":
        return REPRO_SCALE
    if isinstance(temperature, str) or not float(temperature) > 0:
        raise ValueError(f"temperature must be a positive number or 'repro', got {temperature!r}")
    return float(temperature)


def label_softmax(cosines: np.ndarray, scale: float) -> np.ndarray:
    """``softmax(scale · cosines)`` over the last axis as float64 (a float32 score within 6e-8 of 1
    would round to 1.0 and tie: module docstring); any shape ``(..., C)``, one float64 copy."""
    x = scale * np.asarray(cosines, dtype=np.float64)
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


@dataclass
class ViewScores:
    """Per-view label scores, each ``(N, C)`` float64 in [0, 1]: ``s_global`` (S_g), ``s_alpha``
    (max over tiles), ``s_beta`` (min over tiles), ``s_mean`` (mean over tiles)."""

    s_global: np.ndarray
    s_alpha: np.ndarray
    s_beta: np.ndarray
    s_mean: np.ndarray


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


def aggregate(scores: ViewScores, params: PseudoParams = PseudoParams()) -> tuple[np.ndarray, np.ndarray]:
    """``(S_agg, S_final)``, each ``(N, C)`` float64, from stored view scores (no embeddings needed).

    ``local_reduce``: ``cdul`` applies the γ rule with ``zeta``; ``max`` returns α; ``mean`` the
    tile mean. Then ``S_final = ½ (S_g + S_agg + λ |S_g − S_agg|)``.
    """
    if params.local_reduce == "max":
        agg = scores.s_alpha
    elif params.local_reduce == "mean":
        agg = scores.s_mean
    else:
        agg = np.where(scores.s_alpha >= params.zeta, scores.s_alpha, scores.s_beta)
    agg = np.asarray(agg, np.float64)
    g = np.asarray(scores.s_global, np.float64)
    final = np.add(g, agg)  # in place from here: two (N, C) float64 arrays, a third when λ ≠ 0
    if params.lam:
        diff = np.subtract(g, agg)
        np.abs(diff, out=diff)
        diff *= params.lam
        final += diff
    final *= 0.5
    return agg, final


def _fsl(a: np.ndarray) -> pa.FixedSizeListArray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1), type=pa.float64()), a.shape[1])


def scores_table(
    image_ids: np.ndarray, scores: ViewScores, params: PseudoParams = PseudoParams()
) -> pa.Table:
    """The ``ml/pseudo/{split}.parquet`` table: ``image_id, s_global, s_alpha, s_beta, s_mean,
    s_final`` (each ``fixed_size_list<float64>[C]``: probabilities, float64 so that scores near 1
    keep their ranking), ``s_final`` under ``params``."""
    _, final = aggregate(scores, params)
    return pa.table(
        {
            "image_id": pa.array(np.asarray(image_ids, dtype=np.int64)),
            "s_global": _fsl(scores.s_global),
            "s_alpha": _fsl(scores.s_alpha),
            "s_beta": _fsl(scores.s_beta),
            "s_mean": _fsl(scores.s_mean),
            "s_final": _fsl(final),
        }
    )


def read_scores(table: pa.Table) -> tuple[np.ndarray, ViewScores, np.ndarray]:
    """``(image_ids (N,), view scores, s_final (N, C))`` from a :func:`scores_table` table, float64
    (a table written as float32 before scores were kept in float64 is read as float64, its ties
    kept)."""

    def col(name: str) -> np.ndarray:
        arr = table.column(name).combine_chunks()
        flat = arr.values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        return flat.reshape(len(arr), arr.type.list_size)

    views = ViewScores(col("s_global"), col("s_alpha"), col("s_beta"), col("s_mean"))
    return table.column("image_id").to_numpy().astype(np.int64), views, col("s_final")


def pseudo_targets(table: pa.Table, image_ids: np.ndarray, params: PseudoParams | None = None) -> np.ndarray:
    """``(n, C)`` float32 CDUL pseudo-labels of ``image_ids`` from an ``ml/pseudo/{split}`` table:
    its stored ``s_final``, or re-aggregated under ``params`` (any ζ, λ, reduction).

    Raises:
        ValueError: an image id is not in the table.
    """
    ids, views, final = read_scores(table)
    if params is not None:
        _, final = aggregate(views, params)
    pos = pd.Index(ids).get_indexer(np.asarray(image_ids, dtype=np.int64))
    if (pos < 0).any():
        missing = np.asarray(image_ids)[pos < 0][:5].tolist()
        raise ValueError(f"{int((pos < 0).sum())} image ids have no pseudo-labels, e.g. {missing}")
    return final[pos].astype(np.float32, copy=False)
