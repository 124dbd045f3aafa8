"""The image training loop of the ``finetune`` and ``mldecoder`` learners: gradient alignment (spec 6)
on images, one process or many (``torchrun``/``srun`` through :mod:`s3a.train.distributed`, DDP).

Per batch (a training view of each image, :mod:`s3a.train.augment`): a forward of
:class:`~s3a.multilabel.imagetrain.network.ImageLabelNet`, the loss against the batch's latent labels ``y``
(:func:`~s3a.multilabel.imagetrain.network.image_loss`), and in *update epochs* the labels step of
:func:`s3a.multilabel.cdul.align.label_step` with the predictions of that same forward (before the
network's step), then the network's step. Which epochs update, and when updates stop
(``max_updates``, ``min_label_change``; never a test metric), is
:class:`s3a.multilabel.cdul.align.UpdateCounter`. With ``supervision: gt_seen`` the targets are ground
truth and never change. Under DDP each process updates the labels of the images of its shard, and
the rows are exchanged after every update epoch, so all processes hold the same ``y``.

Resume: after every epoch the main process saves :class:`AlignState` (weights, optimiser, latent
labels, the update counters, history) under ``resources/``; every epoch re-seeds Python, NumPy,
torch, the sampler and the loader from (seed, epoch, rank) (:func:`s3a.train.state.seed_everything`),
so a run killed after any epoch and started again ends identical to an uninterrupted one.

Cost per epoch: one forward and backward of the tower per train image (ViT-B/16 on COCO train, 82k
images: about 3 minutes on one H100 in bf16); the ``finetune`` head's start needs one more forward
pass (:func:`s3a.train.loop.extract_features`). Memory: ``y`` ``(N, C)`` float32 on the CPU of each
process (COCO 82k x 80: 26 MB; NUS-WIDE 150k x 925: 0.55 GB) plus the model and one batch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from s3a.models import ModelSpec, load_clip
from s3a.multilabel.cdul.align import EPS, UpdateCounter, label_step
from s3a.multilabel.cdul.linear import init_linear_head
from s3a.multilabel.imagetrain.network import (
    ImageLabelNet,
    ImageTrainParams,
    build_net,
    image_loss,
    net_param_groups,
)
from s3a.resume import fingerprint
from s3a.train import distributed
from s3a.train.augment import OneView, training_views
from s3a.train.optim import cosine_lr
from s3a.train.preempt import Preempted, SignalFlag, epoch_loader, random_states, set_random_states
from s3a.train.state import SavedState, seed_everything
from s3a.train.step import max_over_ranks

__all__ = ["AlignState", "ImageTrainResult", "run_fingerprint", "train_images"]

log = logging.getLogger(__name__)


@dataclass
class AlignState(SavedState):
    """Resume state of an image learner (saved after every epoch by the main process).

    Attributes:
        fingerprint: :func:`run_fingerprint` of the run; another run's state is ignored.
        epoch: epochs finished (1-based epochs ``1..epoch`` are done).
        step: optimiser steps taken (the cosine schedule goes on from it).
        network, optimizer: ``state_dict()`` of each.
        labels: ``(N, C)`` float32 latent labels ``y`` after the last finished epoch.
        n_updates, updating: the :class:`~s3a.multilabel.cdul.align.UpdateCounter`.
        history: one row per finished epoch.
        step_in_epoch: steps done in epoch ``epoch + 1`` when the state was saved on a signal
            (:mod:`s3a.train.preempt`; 0 at an epoch boundary); ``labels`` then holds every process's
            updates up to that step, and ``epoch_sums``/``lr``/``random_states`` the epoch's running
            sums over all processes, its last learning rate and the main process's random states.
    """

    fingerprint: str
    epoch: int
    step: int
    network: dict
    optimizer: dict
    labels: np.ndarray
    n_updates: int
    updating: bool
    history: list[dict]
    step_in_epoch: int = 0
    epoch_sums: list[float] = dataclasses.field(default_factory=list)
    lr: float = 0.0
    random_states: dict | None = None


@dataclass
class ImageTrainResult:
    """The trained network (unwrapped, on the training device), the latent labels ``(N, C)`` float32
    after the last epoch and the history (``epoch, lr, loss_net, loss_label, mean_abs_dy,
    mean_abs_y_minus_p, n_updates, gt_label_map``)."""

    net: ImageLabelNet
    labels: np.ndarray
    history: pd.DataFrame


def run_fingerprint(
    paths: Sequence[str],
    targets: np.ndarray,
    text: np.ndarray,
    params: ImageTrainParams,
    spec: ModelSpec,
    world: int,
) -> str:
    """Identity of a run (settings, model entry, images, initial targets, label text, process count)."""
    # how a run stops (checkpoint_signals) is not what it computes
    payload = [
        dataclasses.asdict(dataclasses.replace(params, checkpoint_signals=())),
        dataclasses.asdict(spec),
    ]
    payload += [list(paths), world]
    settings = json.dumps(payload, sort_keys=True, default=str)
    return fingerprint(settings, np.asarray(targets, np.float32), np.asarray(text, np.float32))


def _label_map(gt: np.ndarray | None, y: np.ndarray) -> float:
    if gt is None:
        return math.nan
    from s3a.multilabel.metrics import mean_average_precision

    return mean_average_precision(gt, y)[0]


def _start_linear_head(net: ImageLabelNet, clip, paths: Sequence[str], text, params, env) -> None:
    """The ``finetune`` head's start from the train images' unit embeddings (one eval pass, shared
    by all processes)."""
    from s3a.train.loop import extract_features
    from s3a.train.params import TrainParams

    read = TrainParams(extract_batch_size=params.batch_size, num_workers=params.num_workers)
    features = extract_features(net.visual, list(paths), clip.preprocess, read, env)
    init_linear_head(net.head, features, np.asarray(text, np.float32), params.init_scale)


def _sync_labels(y: torch.Tensor, index: list[torch.Tensor], rows: list[torch.Tensor], env) -> None:
    """After an update epoch under DDP: every process takes the rows the others updated."""
    c = y.shape[1]
    idx = torch.cat(index) if index else torch.zeros(0, dtype=torch.long)
    new = torch.cat(rows) if rows else torch.zeros(0, c)
    marked = torch.cat([new, torch.ones(len(new), 1)], dim=1)
    merged = distributed.gather_rows(idx, marked, len(y), env)
    touched = merged[:, c] > 0.5
    y[torch.from_numpy(touched)] = torch.from_numpy(merged[touched, :c])


def train_images(
    paths: Sequence[str],
    targets: np.ndarray,
    text: np.ndarray,
    params: ImageTrainParams,
    spec: ModelSpec,
    env: distributed.DistEnv,
    state_path: str | None = None,
    gt: np.ndarray | None = None,
    progress: bool = True,
) -> ImageTrainResult:
    """Train an image learner with gradient alignment (module docstring).

    Args:
        paths: ``(N,)`` train image files.
        targets: ``(N, C)`` initial latent labels in [0, 1] (CDUL ``S_final``) or ground truth
            (``supervision: gt_seen``, kept fixed); clamped to [ε, 1−ε].
        text: ``(C, D)`` unit label text embeddings (the ``finetune`` head's start, the decoder's queries).
        env: the process group (:func:`s3a.train.distributed.setup`).
        state_path: resume file (outside the rule's outputs).
        gt: ``(N, C)`` bool ground truth, only for the ``gt_label_map`` diagnostic.
    """
    n, c = targets.shape
    if len(paths) != n or text.shape[0] != c:
        raise ValueError(f"{len(paths)} images, targets {targets.shape} and label text {text.shape} disagree")
    if params.batch_size % env.world_size:
        raise ValueError(
            f"multilabel.train.batch_size {params.batch_size} must divide by the {env.world_size} processes"
        )
    if n < params.batch_size:
        raise ValueError(f"{n} training images are fewer than one batch of {params.batch_size}")
    seed_everything(params.seed, -1, 0)
    clip = load_clip(spec, device=env.device)
    net = build_net(clip.model.visual, text, params).to(env.device)
    optimizer = torch.optim.AdamW(net_param_groups(net, params), lr=params.lr, eps=1e-8)
    y = torch.from_numpy(np.clip(targets, EPS, 1 - EPS).astype(np.float32))
    counter = UpdateCounter(
        params.label_update
        if params.supervision == "pseudo"
        else dataclasses.replace(params.label_update, enabled=False)
    )
    fingerprint = run_fingerprint(paths, targets, text, params, spec, env.world_size)
    state = AlignState.load(state_path, fingerprint) if state_path else None
    history, start, step = [], 0, 0
    if state is not None:
        net.load_state_dict(state.network)
        optimizer.load_state_dict(state.optimizer)
        y = torch.as_tensor(state.labels, dtype=torch.float32).clone()
        counter.n_updates, counter.updating = state.n_updates, state.updating
        history, start, step = state.history, state.epoch, state.step
        log.info("resuming the %s learner after epoch %d from %s", params.learner, start, state_path)
    elif params.learner == "finetune":
        _start_linear_head(net, clip, paths, text, params, env)
    model = DistributedDataParallel(net) if env.distributed else net

    view = {"none": clip.preprocess}.get(params.augment)
    if view is None:
        weak, strong = training_views(clip.preprocess_cfg)
        view = weak if params.augment == "weak" else strong
    data = OneView(paths, view, seed=params.seed)
    per_rank = params.batch_size // env.world_size
    steps = math.ceil((n // env.world_size) / per_rank)
    total = steps * params.epochs
    stop = SignalFlag(params.checkpoint_signals)

    def save(epoch: int, done: int = 0, sums=(), lr: float = 0.0) -> None:
        if env.is_main and state_path:
            AlignState(
                fingerprint=fingerprint, epoch=epoch, step=step, network=net.state_dict(),
                optimizer=optimizer.state_dict(), labels=y.numpy().copy(), n_updates=counter.n_updates,
                updating=counter.updating, history=history, step_in_epoch=done,
                epoch_sums=[float(v) for v in sums], lr=lr, random_states=random_states() if done else None,
            ).save(state_path)  # fmt: skip

    with stop.installed():  # from here a signal saves the state at the next step or epoch end
        for epoch in range(start + 1, params.epochs + 1):
            seed_everything(params.seed, epoch, env.rank)
            update = counter.due(epoch)
            sums = np.zeros(5)  # loss * B, loss_label, |dy|, |y - p|, images
            done, lr = 0, 0.0
            if state is not None and state.step_in_epoch:  # resumed in the middle of this epoch
                done, lr = state.step_in_epoch, state.lr
                sums = np.asarray(state.epoch_sums, dtype=np.float64) * (1.0 if env.is_main else 0.0)
                if env.is_main and state.random_states is not None:
                    set_random_states(state.random_states)
            state = None
            loader = epoch_loader(data, env, epoch, params.seed, per_rank, done, params.num_workers)
            index, rows = [], []
            model.train()
            bar = tqdm(
                loader, desc=f"epoch {epoch}", disable=not (progress and env.is_main), mininterval=5,
                initial=done, total=steps,
            )  # fmt: skip
            for images, idx in bar:
                factor = cosine_lr(step, total, 1.0, 0.0)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
                lr = params.lr * factor
                target = y[idx].to(env.device)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=env.device.type == "cuda"):
                    out = model(images.to(env.device, non_blocking=True))
                loss, p = image_loss(out, target, params)
                sums[3] += float((target - p).abs().sum())
                if update:
                    new, lab, dy = label_step(target, p.float(), params.label_update)
                    y[idx] = new.cpu()
                    index.append(idx)
                    rows.append(new.cpu())
                    sums[1:3] += (lab, dy)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                done += 1
                sums[[0, 4]] += (float(loss.detach()) * len(idx), len(idx))
                if stop.agreed(lambda v: max_over_ranks(v, env)):  # save this step, then stop
                    if update and env.distributed:
                        _sync_labels(y, index, rows, env)
                    save(epoch - 1, done, distributed.all_reduce_sum(sums, env), lr)
                    distributed.barrier()
                    raise Preempted(stop.received or "a signal", epoch - 1, done, str(state_path))
            sums = distributed.all_reduce_sum(sums, env)
            if update and env.distributed:
                _sync_labels(y, index, rows, env)
            seen = max(sums[4], 1.0)
            mean_dy = sums[2] / (seen * c) if update else math.nan
            if update:
                counter.record(epoch, mean_dy)
            row = {
                "epoch": epoch,
                "lr": lr,
                "loss_net": sums[0] / seen,
                "loss_label": sums[1] / seen if update else math.nan,
                "mean_abs_dy": mean_dy,
                "mean_abs_y_minus_p": sums[3] / (seen * c),
                "n_updates": counter.n_updates,
                "gt_label_map": _label_map(gt, y.numpy()) if update or epoch == 1 else math.nan,
            }
            history.append(row)
            if env.is_main:
                log.info(
                    "epoch %d: %s",
                    epoch,
                    ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                )
            save(epoch)
            distributed.barrier()
            if stop.agreed(lambda v: max_over_ranks(v, env)):  # saved at the epoch's end: stop here
                raise Preempted(stop.received or "a signal", epoch, 0, str(state_path))
    return ImageTrainResult(net=net.eval(), labels=y.numpy(), history=pd.DataFrame(history))
