"""The ``linear`` learner of gradient-alignment training (spec 6): a logistic head on cached embeddings.

A :class:`LinearHead` on the global embeddings (optionally with max-pooled tile embeddings,
:func:`linear_features`) starts at ``s0 · W`` with a per-label bias (:func:`init_linear_head`) and
is trained on the latent labels, which are updated in update epochs by
:func:`s3a.multilabel.cdul.align.label_step` (the formulas, schedule and stopping rules are in
:mod:`s3a.multilabel.cdul.align`; the network losses in :func:`s3a.multilabel.losses.network_loss`).
A GT label mAP is only logged (``gt_label_map``) when targets are passed.

Cost at full scale (COCO train 82k x D 512, C 80): one epoch is 82k x 512 x 80 x 6 FLOP ≈ 20 GFLOP
(a few seconds on a CPU); memory the features, ``y`` and one ``(N, C)`` label table.

The rules: ``train_linear`` is :func:`train_linear_step` (+ :func:`save_linear`), its settings from
:func:`s3a.multilabel.learners.linear_settings`; ``predict_linear`` is :func:`load_linear` and
:func:`predict_linear_step`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from s3a.io import atomic_path
from s3a.multilabel.aggregate import PseudoParams, pseudo_targets
from s3a.multilabel.cdul.align import EPS, LabelUpdateParams, UpdateCounter, label_step
from s3a.multilabel.data.tables import check_split, label_matrix, labels_table, predictions_table
from s3a.multilabel.losses import NET_LOSSES, AslParams, network_loss
from s3a.multilabel.views.tables import align_views
from s3a.resume import fingerprint, load_state, save_state

__all__ = [
    "LinearParams",
    "init_linear_head",
    "LinearHead",
    "LinearResult",
    "train_linear",
    "linear_features",
    "predict_linear",
    "LinearOutputs",
    "train_linear_step",
    "save_linear",
    "load_linear",
    "predict_linear_step",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinearParams:
    """The ``linear`` learner (config ``multilabel.train`` for ``learner: linear``).

    Attributes:
        epochs: passes over the train images.
        batch_size: images per step.
        lr: learning rate.
        optimizer: ``adam`` (default) or ``sgd``.
        net_loss: ``bce`` (sigmoid outputs, default), ``asl`` (the asymmetric loss with ``asl``,
            sigmoid outputs) or ``kl_softmax`` (softmax outputs, the CDUL reproduction's loss; pair
            it with ``label_update.loss: categorical_kl``); :func:`~s3a.multilabel.losses.network_loss`.
        weight_decay: L2 weight decay of the optimiser.
        init_scale: s0; the head starts at ``s0 · W`` with bias ``b_c = −s0 · q90(cos_{·c})``
            (about 10 % predicted positive at the start); ignored without a label classifier
            (zero start). For features of k concatenated views (:func:`linear_features`) the start
            is ``s0 · [W, …, W] / k``, the mean of the views' cosines.
        seed: seed of the initial shuffle order and of torch.
        device: ``cpu`` (default; the learner is CPU-fast) or ``cuda``.
        asl: asymmetric-loss settings for ``net_loss: asl`` (config ``multilabel.train.asl``, a
            mapping is converted; default spec 7's γ− = 4, γ+ = 0, m = 0.05).
    """

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"
    net_loss: str = "bce"
    weight_decay: float = 0.0
    init_scale: float = 50.0
    seed: int = 0
    device: str = "cpu"
    asl: AslParams = field(default_factory=AslParams)

    def __post_init__(self) -> None:
        if isinstance(self.asl, Mapping):
            object.__setattr__(self, "asl", AslParams(**self.asl))
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.net_loss not in NET_LOSSES:
            raise ValueError(f"net_loss must be one of {NET_LOSSES}, got {self.net_loss!r}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("linear learner needs epochs >= 1, batch_size >= 1, lr > 0")


class LinearHead(torch.nn.Module):
    """Logits ``x A^T + b``: ``(B, D)`` features -> ``(B, C)`` logits."""

    def __init__(self, dim: int, n_labels: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(dim, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@dataclass
class LinearResult:
    """Result of :func:`train_linear`: the head, the refined labels ``y`` ``(N, C)`` float32 and the
    per-epoch ``history`` (``epoch, lr, loss_net, loss_label, mean_abs_dy, mean_abs_y_minus_p,
    n_updates, gt_label_map``)."""

    head: LinearHead
    labels: np.ndarray
    history: pd.DataFrame


def _label_map(gt: np.ndarray | None, y: np.ndarray) -> float:
    if gt is None:
        return float("nan")
    from s3a.multilabel.metrics import mean_average_precision

    return mean_average_precision(gt, y)[0]


def init_linear_head(
    head: LinearHead, features: np.ndarray, classifier: np.ndarray | None, s0: float
) -> None:
    """Start ``head`` at ``s0 · W`` (tiled over concatenated views) with bias ``−s0 · q90`` of each
    label's cosines over ``features`` ``(N, D)`` (about 10 % predicted positive), or at zero without
    a classifier. Memory: the ``(N, C)`` cosines over the label set (COCO: 82k x 80)."""
    with torch.no_grad():
        if classifier is None:
            head.linear.weight.zero_()
            head.linear.bias.zero_()
            return
        w = np.asarray(classifier, np.float32)
        blocks, rest = divmod(features.shape[1], w.shape[1])
        if rest or blocks < 1:
            raise ValueError(f"classifier {w.shape} does not match features {features.shape}")
        w = np.tile(w, (1, blocks)) / blocks  # concatenated views (global, pooled tiles) share W
        q90 = np.quantile(features @ w.T, 0.9, axis=0)  # (C,): (N, C) over the label set, not the vocabulary
        head.linear.weight.copy_(torch.from_numpy(s0 * w))
        head.linear.bias.copy_(torch.from_numpy((-s0 * q90).astype(np.float32)))


def train_linear(
    features: np.ndarray,
    labels: np.ndarray,
    classifier: np.ndarray | None = None,
    params: LinearParams = LinearParams(),
    update: LabelUpdateParams | None = None,
    gt: np.ndarray | None = None,
    progress: bool = True,
    state_path: str | None = None,
) -> LinearResult:
    """Train the ``linear`` learner with gradient alignment.

    Args:
        features: ``(N, D)`` train features (global embeddings, optionally with pooled tiles).
        labels: ``(N, C)`` initial latent labels (``S_final`` of the train split), clamped to [ε, 1−ε].
        classifier: ``(C, D)`` unit label text embeddings for the initialisation, or ``None``.
        update: the latent-label schedule (``None``: the defaults of
            :class:`~s3a.multilabel.cdul.align.LabelUpdateParams`).
        gt: ``(N, C)`` bool ground truth, only for the ``gt_label_map`` diagnostic column.
        state_path: resume file (kept outside the rule's outputs, e.g. under ``resources/``): the
            head, optimiser, latent labels, shuffle generator and history are saved after every
            epoch, and a run whose settings and inputs match continues from it with identical
            results. Size ``N·C`` floats (COCO: 26 MB).
    """
    update = update or LabelUpdateParams()
    x_all = np.ascontiguousarray(features, dtype=np.float32)
    n, d = x_all.shape
    if labels.shape[0] != n:
        raise ValueError(f"labels {labels.shape} and features {x_all.shape} disagree on N")
    torch.manual_seed(params.seed)
    dev = torch.device(params.device)
    head = LinearHead(d, labels.shape[1])
    init_linear_head(head, x_all, classifier, params.init_scale)
    head.to(dev)
    opt_cls = torch.optim.Adam if params.optimizer == "adam" else torch.optim.SGD
    opt = opt_cls(head.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    x = torch.from_numpy(x_all).to(dev)
    y = torch.from_numpy(np.clip(labels, EPS, 1 - EPS).astype(np.float32)).to(dev)
    gen = torch.Generator().manual_seed(params.seed)
    counter, rows, first = UpdateCounter(update), [], 1
    digest = fingerprint((params, update), x_all, labels) if state_path else ""
    state = load_state(state_path, digest, dev) if state_path else None
    if state is not None:
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        y = state["y"].to(dev)
        gen.set_state(state["gen"])
        counter.n_updates, counter.updating = state["n_updates"], state["updating"]
        rows = state["rows"]
        first = state["epoch"] + 1
        log.info("resuming the linear learner after epoch %d from %s", state["epoch"], state_path)
    for epoch in tqdm(
        range(first, params.epochs + 1), desc="align", unit="epoch", disable=not progress, mininterval=5
    ):
        do_update = counter.due(epoch)
        order = torch.randperm(n, generator=gen).to(dev)
        loss_sum = lab_sum = dy_sum = gap_sum = 0.0
        for s in range(0, n, params.batch_size):
            idx = order[s : s + params.batch_size]
            target = y[idx]
            loss, p = network_loss(head(x[idx]), target, params.net_loss, params.asl)
            gap_sum += float((target - p).abs().sum())
            if do_update:
                y[idx], lab, dy = label_step(target, p, update)
                lab_sum, dy_sum = lab_sum + lab, dy_sum + dy
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
        cells = n * labels.shape[1]
        mean_dy = dy_sum / cells if do_update else float("nan")
        if do_update:
            counter.record(epoch, mean_dy)
        rows.append(
            {
                "epoch": epoch,
                "lr": params.lr,
                "loss_net": loss_sum / n,
                "loss_label": lab_sum / n if do_update else float("nan"),
                "mean_abs_dy": mean_dy,
                "mean_abs_y_minus_p": gap_sum / cells,
                "n_updates": counter.n_updates,
                "gt_label_map": _label_map(gt, y.cpu().numpy()) if do_update or epoch == 1 else float("nan"),
            }
        )
        if state_path:
            state = {
                "fingerprint": digest,
                "epoch": epoch,
                "head": head.state_dict(),
                "opt": opt.state_dict(),
            }
            state.update(y=y.cpu(), gen=gen.get_state(), n_updates=counter.n_updates, rows=rows)
            state["updating"] = counter.updating
            save_state(state_path, state)
    return LinearResult(head.cpu(), y.cpu().numpy(), pd.DataFrame(rows))


def linear_features(global_emb: np.ndarray, tile_emb: np.ndarray | None = None) -> np.ndarray:
    """Input of the ``linear`` learner: the global embeddings ``(N, D)``, or with tiles ``(N, M, D)``
    the concatenation ``[z, unit(max_j z_j)]`` ``(N, 2D)`` (max-pooled tile embeddings)."""
    if tile_emb is None:
        return np.asarray(global_emb, np.float32)
    pooled = tile_emb.max(axis=1)
    pooled = pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(min=1e-12)
    return np.concatenate([global_emb, pooled], axis=1).astype(np.float32)


def predict_linear(head: LinearHead, features: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """``(N, C)`` float64 sigmoid scores of ``features`` ``(N, D)``, in chunks of images (the
    sigmoid in float64: in float32 every logit above ~16.6 scores 1.0 and ties)."""
    out = []
    with torch.inference_mode():
        for s in range(0, len(features), chunk):
            xb = torch.from_numpy(np.ascontiguousarray(features[s : s + chunk], dtype=np.float32))
            out.append(torch.sigmoid(head(xb).double()).numpy())
    return np.concatenate(out) if out else np.zeros((0, head.linear.out_features), np.float64)


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
    params: LinearParams,
    update: LabelUpdateParams,
    tiles: bool,
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
        params, update: the learner and its label updates; tiles: whether the features include the
            max-pooled tiles (:func:`linear_features`). The config's ``multilabel.train`` gives all
            three through :func:`s3a.multilabel.learners.linear_settings`.
        pseudo: the ``ml/pseudo/train`` table; targets are its view scores re-aggregated under
            ``pseudo_params`` (:func:`~s3a.multilabel.aggregate.pseudo_targets`).
        image_ids, global_emb: ``embed/train``; tile_ids, tile_emb: ``ml/tiles/train`` (may be
            ``None`` when ``linear.tiles`` is false).
        classifier: ``W`` ``(C, D)``, the head's start ``s0·W``.
        labels: the ground-truth table, only for the ``gt_label_map`` column of the history.
        manifest: when given, every training image must be a ``train`` image of it.
        state_path: the resume file of :func:`~s3a.multilabel.cdul.linear.train_linear`.

    Raises:
        ValueError: misaligned inputs, or images without pseudo-labels.
    """
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
