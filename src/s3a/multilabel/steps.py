"""The CDUL rules' steps (``workflow/rules/multilabel.smk``): in-memory inputs -> output tables.

One function per rule; the adapters in ``workflow/scripts/`` (named as their rules) only read their
inputs, call it and write what it returns. Every step reuses the library (:mod:`.tiles`,
:mod:`.pseudo`, :mod:`.linear`, :mod:`.supervision`, :mod:`.finetune`); the evaluation of a stage
is :mod:`.stages`.

============================  ====================================================================
rule                          step
============================  ====================================================================
``prepare_multilabel``        :func:`s3a.multilabel.data.build_multilabel` (no wrapper)
``embed_label_set``           :func:`embed_label_set` -> ``label_index, embedding``
``embed_tiles``               :func:`embed_tiles` -> the ``ml/tiles/{split}`` table
``init_pseudolabels``         :func:`init_pseudolabels` -> the ``ml/pseudo/{split}`` table
``train_linear``              :func:`train_linear_step` (+ :func:`save_linear`) -> head, history,
                              ``labels_refined`` (``image_id, y``)
``predict_linear``            :func:`load_linear` + :func:`predict_linear_step` -> ``image_id, scores``
``predict_images``            :func:`predict_images` -> ``image_id, scores``
============================  ====================================================================

Image ids: ``embed/{split}`` (:mod:`s3a.embed`) and ``ml/tiles/{split}`` each skip the images their
reader could not use (logged there). :func:`align_views` pairs them by ``image_id`` and refuses two
different image sets with one message naming the ids, so that no row is silently mismatched.

Cost at full size (COCO train 82k images, C 80, M 9, D 512): the tile embeddings dominate
(``N·M·D`` floats, 1.5 GB float32); the pseudo tables and the linear learner are ``(N, C)``
(26 MB each); nothing is images x vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from s3a.io import atomic_path, embeddings_table, read_embeddings
from s3a.multilabel.data import label_matrix
from s3a.multilabel.learners import learner_params, linear_uses_tiles
from s3a.multilabel.linear import LinearHead, linear_features, predict_linear, train_linear
from s3a.multilabel.pseudo import PseudoParams, label_classifier, scores_table, view_scores
from s3a.multilabel.supervision import pseudo_targets
from s3a.multilabel.tables import check_split, predictions_table
from s3a.multilabel.tiles import TileParams, encode_tiles, tiles_table

__all__ = [
    "read_classifier",
    "split_rows",
    "align_views",
    "embed_label_set",
    "embed_tiles",
    "init_pseudolabels",
    "LinearOutputs",
    "train_linear_step",
    "save_linear",
    "load_linear",
    "predict_linear_step",
    "predict_images",
]

log = logging.getLogger(__name__)


def read_classifier(path: str | Path) -> np.ndarray:
    """``W`` ``(C, D)`` float32 from a ``label_classifier.parquet`` file, rows in ``label_index``
    order.

    Raises:
        ValueError: the ``label_index`` values are not ``0..C-1``.
    """
    ids, w = read_embeddings(path, id_column="label_index")
    order = np.argsort(ids, kind="stable")
    if not np.array_equal(ids[order], np.arange(len(ids))):
        raise ValueError(f"{path}: label_index must be 0..C-1, got {np.sort(ids)[:10].tolist()}...")
    return w[order]


def split_rows(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The manifest rows of ``split``; a split without images is an error naming the splits there."""
    rows = manifest[manifest["split"] == split]
    if rows.empty:
        raise ValueError(
            f"the manifest has no images in split {split!r}; splits: {sorted(set(manifest.split))}"
        )
    return rows


def align_views(
    image_ids: np.ndarray,
    global_emb: np.ndarray,
    tile_ids: np.ndarray | None = None,
    tile_emb: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(ids, global (N, D), tiles (N, M, D) or None)`` sorted by ``image_id`` and paired by id.

    Raises:
        ValueError: repeated ids, or the global embeddings and the tiles hold different images
            (counts and example ids of each side; re-run both embedding rules).
    """
    ids = np.asarray(image_ids, dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("the global embeddings repeat image ids")
    order = np.argsort(ids, kind="stable")
    ids, glob = ids[order], np.asarray(global_emb)[order]
    if tile_ids is None:
        return ids, glob, None
    tids = np.asarray(tile_ids, dtype=np.int64)
    if len(np.unique(tids)) != len(tids):
        raise ValueError("the tile embeddings repeat image ids")
    torder = np.argsort(tids, kind="stable")
    if not np.array_equal(ids, tids[torder]):
        only_g, only_t = np.setdiff1d(ids, tids), np.setdiff1d(tids, ids)
        raise ValueError(
            f"embed/{{split}} ({len(ids)} images) and ml/tiles/{{split}} ({len(tids)} images) hold "
            f"different images: {len(only_g)} only in the embeddings (e.g. {only_g[:5].tolist()}), "
            f"{len(only_t)} only in the tiles (e.g. {only_t[:5].tolist()}); re-run both rules on the "
            "same manifest (an image too small for the tile grid is skipped by the tiles only)"
        )
    if glob.shape[1] != tile_emb.shape[2]:
        raise ValueError(f"global embeddings {glob.shape} and tiles {tile_emb.shape} differ in D")
    return ids, glob, np.asarray(tile_emb)[torder]


def embed_label_set(
    clip, label_set: pd.DataFrame, templates: str = "cdul", batch_size: int = 1024
) -> pa.Table:
    """Rule ``embed_label_set``: ``label_index, embedding`` (unit ``W`` rows) of the label set's
    ``prompt`` column through :func:`s3a.multilabel.pseudo.label_classifier` on ``clip`` (a
    :class:`s3a.models.LoadedClip`).

    Raises:
        ValueError: the ``label_index`` values are not ``0..C-1``, or an unknown template set.
    """
    rows = label_set.sort_values("label_index")
    index = rows["label_index"].to_numpy(dtype=np.int64)
    if not np.array_equal(index, np.arange(len(index))):
        raise ValueError(f"label_set.label_index must be 0..C-1, got {index[:10].tolist()}...")
    w = label_classifier(clip.model, clip.tokenizer, rows["prompt"].tolist(), templates, batch_size)
    return embeddings_table(index, w, id_column="label_index")


def embed_tiles(clip, manifest: pd.DataFrame, split: str, params: TileParams) -> pa.Table:
    """Rule ``embed_tiles``: the ``ml/tiles/{split}`` table (:func:`s3a.multilabel.tiles.tiles_table`)
    of the split's images. Unreadable images, and images smaller than the grid, are skipped and
    logged by :func:`~s3a.multilabel.tiles.encode_tiles` (as :func:`s3a.embed.encode_images` skips
    unreadable ones); they have no rows. Cost: ``M`` forwards per image (module docstring)."""
    rows = split_rows(manifest, split)
    result = encode_tiles(clip.model, clip.preprocess, rows["path"].tolist(), params)
    log.info(
        "%s: %d tiles from each of %d of %d images (%d skipped)",
        split, params.n_tiles, len(result.index), len(rows), len(result.failed),
    )  # fmt: skip
    ids = rows["image_id"].to_numpy(dtype=np.int64)[result.index]
    return tiles_table(ids, result.boxes, result.embeddings, params.dtype)


def init_pseudolabels(
    image_ids: np.ndarray,
    global_emb: np.ndarray,
    tile_ids: np.ndarray,
    tile_emb: np.ndarray,
    classifier: np.ndarray,
    params: PseudoParams,
) -> pa.Table:
    """Rule ``init_pseudolabels``: the ``ml/pseudo/{split}`` table
    (:func:`~s3a.multilabel.pseudo.scores_table`) from ``embed/{split}`` (``image_ids (N,)``,
    ``global_emb (N, D)``), ``ml/tiles/{split}`` (``tile_ids (N,)``, ``tile_emb (N, M, D)``) and
    ``W`` ``(C, D)``; rows by ``image_id`` (:func:`align_views`)."""
    ids, glob, tiles = align_views(image_ids, global_emb, tile_ids, tile_emb)
    return scores_table(ids, view_scores(glob, tiles, classifier, params), params)


@dataclass
class LinearOutputs:
    """What :func:`train_linear_step` gives: the ``head`` (CPU), whether its features include the
    pooled tiles (``tiles``), the per-epoch ``history`` and ``labels`` (``labels_refined``:
    ``image_id, y fixed_size_list<float32>[C]``)."""

    head: LinearHead
    tiles: bool
    history: pd.DataFrame
    labels: pa.Table


def train_linear_step(
    train: Mapping[str, Any],
    pseudo: pa.Table,
    pseudo_params: PseudoParams,
    image_ids: np.ndarray,
    global_emb: np.ndarray,
    tile_ids: np.ndarray | None,
    tile_emb: np.ndarray | None,
    classifier: np.ndarray,
    labels: pd.DataFrame | None = None,
    manifest: pd.DataFrame | None = None,
    state_path: str | None = None,
    progress: bool = True,
) -> LinearOutputs:
    """Rule ``train_linear``: the ``linear`` learner on the train split.

    Args:
        train: the resolved ``multilabel.train`` slice (:func:`~s3a.multilabel.learners.learner_params`;
            ``linear.tiles`` chooses the features, :func:`~s3a.multilabel.linear.linear_features`).
        pseudo: the ``ml/pseudo/train`` table; targets are its view scores re-aggregated under
            ``pseudo_params`` (:func:`~s3a.multilabel.supervision.pseudo_targets`).
        image_ids, global_emb: ``embed/train``; tile_ids, tile_emb: ``ml/tiles/train`` (may be
            ``None`` when ``linear.tiles`` is false).
        classifier: ``W`` ``(C, D)``, the head's start ``s0·W``.
        labels: the ground-truth table, only for the ``gt_label_map`` column of the history.
        manifest: when given, every training image must be a ``train`` image of it.
        state_path: the resume file of :func:`~s3a.multilabel.linear.train_linear`.

    Raises:
        ValueError: a bad ``train`` slice, misaligned inputs, or images without pseudo-labels.
    """
    params, update = learner_params(train, "linear")
    tiles = linear_uses_tiles(train)
    if tiles and tile_emb is None:
        raise ValueError("multilabel.train.linear.tiles is true but no tile embeddings were given")
    ids, glob, tile = align_views(image_ids, global_emb, tile_ids if tiles else None, tile_emb)
    if manifest is not None:
        check_split(manifest, ids, "train", "embed/train")
    targets = pseudo_targets(pseudo, ids, pseudo_params)
    if targets.shape[1] != len(classifier):
        raise ValueError(f"{targets.shape[1]} labels in the pseudo-labels but {len(classifier)} in W")
    gt = None if labels is None else label_matrix(labels, ids, len(classifier))[0]
    result = train_linear(
        linear_features(glob, tile), targets, classifier, params, update, gt, progress, state_path
    )
    from s3a.multilabel.train import labels_table

    return LinearOutputs(result.head, tiles, result.history, labels_table(ids, result.labels))


def save_linear(head: LinearHead, path: str | Path, tiles: bool) -> None:
    """``model.pt`` of the ``linear`` learner: its weights, shape and feature kind (atomic write)."""
    weight = head.linear.weight
    state = {
        "learner": "linear",
        "head": head.state_dict(),
        "dim": int(weight.shape[1]),
        "n_labels": int(weight.shape[0]),
        "tiles": bool(tiles),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_linear(path: str | Path) -> tuple[LinearHead, bool]:
    """``(head, tiles)`` from a :func:`save_linear` file."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("learner") != "linear":
        raise ValueError(f"{path} is not a model of the linear learner")
    head = LinearHead(state["dim"], state["n_labels"])
    head.load_state_dict(state["head"])
    return head.eval(), bool(state["tiles"])


def predict_linear_step(
    head: LinearHead,
    tiles: bool,
    image_ids: np.ndarray,
    global_emb: np.ndarray,
    tile_ids: np.ndarray | None = None,
    tile_emb: np.ndarray | None = None,
) -> pa.Table:
    """Rule ``predict_linear``: ``image_id, scores`` (sigmoid, ``(N, C)``) of one split's
    ``embed/{split}`` (and ``ml/tiles/{split}`` when the head was trained with ``tiles``).

    Raises:
        ValueError: tiles missing for a tiles head, or features of another width than the head's.
    """
    if tiles and tile_emb is None:
        raise ValueError("this linear model was trained with tiles (linear.tiles); pass the split's tiles")
    ids, glob, tile = align_views(image_ids, global_emb, tile_ids if tiles else None, tile_emb)
    x = linear_features(glob, tile)
    if x.shape[1] != head.linear.in_features:
        raise ValueError(f"the linear model takes {head.linear.in_features} features, got {x.shape[1]}")
    return predictions_table(ids, predict_linear(head, x))


def predict_images(
    model_pt: str | Path,
    manifest: pd.DataFrame,
    split: str,
    model_spec,
    batch_size: int = 256,
    decoder: str = "pil",
    num_workers: int = 4,
    device: str | None = None,
    text: np.ndarray | None = None,
    progress: bool = True,
) -> pa.Table:
    """Rule ``predict_images``: ``image_id, scores`` of a split's images under the ``model.pt`` of
    the ``finetune`` or ``mldecoder`` learner (:func:`s3a.multilabel.finetune.predict_finetuned`,
    one forward per image). Unreadable images (NaN rows there) are left out and counted in the log.
    """
    from s3a.multilabel.finetune import predict_finetuned

    rows = split_rows(manifest, split)
    paths: Sequence[str] = rows["path"].tolist()
    scores = predict_finetuned(
        model_pt, paths, model_spec, batch_size, device, decoder, num_workers, text, progress
    )
    ok = ~np.isnan(scores).any(axis=1)
    log.info("%s: scored %d of %d images", split, int(ok.sum()), len(rows))
    return predictions_table(rows["image_id"].to_numpy(dtype=np.int64)[ok], scores[ok])
