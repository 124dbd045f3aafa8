"""One optimizer step and one epoch of self-training (spec 6.3): the teacher's weak view, the
student's strong view, the loss, the EMA update, and the stop on a signal (:mod:`s3a.train.preempt`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from s3a.classify import vocabulary_logits
from s3a.train import distributed
from s3a.train.optim import cosine_lr, ema_decay, ema_update, s3a_loss
from s3a.train.params import TrainParams
from s3a.train.preempt import SignalFlag

__all__ = [
    "BF16_DEVICES", "EpochRun", "encoder_autocast", "head_logits", "max_over_ranks", "train_epoch",
    "train_step",
]  # fmt: skip


#: devices on which ``train.precision: bf16`` puts the image encoder under bf16 autocast
BF16_DEVICES = ("cuda",)


def encoder_autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast of the image encoder in self-training (steps, teacher features, evaluation):
    bf16 on CUDA for ``precision="bf16"``; off (fp32, even inside an outer autocast) for ``"fp32"``,
    the official run (spec 6.4), and on the CPU."""
    enabled = precision == "bf16" and device.type in BF16_DEVICES
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def head_logits(model: torch.nn.Module, images: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """``(B, V)`` fp32 logits of the image encoder ``model`` over the vocabulary classifier.

    The encoder runs under whatever autocast is active (:func:`encoder_autocast`); the head itself
    (:func:`s3a.embed.vocabulary_logits`) always runs in fp32 with autocast off.
    """
    return vocabulary_logits(model(images), classifier)


def train_step(
    model: torch.nn.Module,
    teacher: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    classifier: torch.Tensor,
    params: TrainParams,
    step: int,
    lr: float,
    device: torch.device,
) -> tuple[float, dict[str, float]]:
    """One optimizer step on ``(weak, strong, structural)`` and the EMA update after it.

    ``model`` is the student, possibly wrapped in DistributedDataParallel; returns the loss and its parts.
    """
    weak, strong, structural = (t.to(device, non_blocking=True) for t in batch)
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]
    with encoder_autocast(device, params.precision):
        with torch.no_grad():
            teacher_logits = head_logits(teacher, weak, classifier)
        student_logits = head_logits(model, strong, classifier)
    loss, parts = s3a_loss(teacher_logits, student_logits, structural, params)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    student = model.module if isinstance(model, DistributedDataParallel) else model
    ema_update(teacher, student, ema_decay(step + 1, params))
    return float(loss.detach()), parts


@dataclass
class EpochRun:
    """One epoch's loop state: the optimizer step, the running sums and how far it got."""

    step: int
    sums: np.ndarray  # loss, loss_ins, loss_str, confident, samples (this process, or all on resume)
    done: int = 0  # steps done in this epoch
    lr: float = math.nan


def train_epoch(
    model: torch.nn.Module,
    teacher: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    labels: torch.Tensor,
    classifier: torch.Tensor,
    params: TrainParams,
    env: distributed.DistEnv,
    run: EpochRun,
    steps: int,
    total: int,
    stop: SignalFlag | None = None,
    checkpoint: Callable[[EpochRun], None] | None = None,
) -> dict[str, float]:
    """Train until ``steps`` steps of the epoch are done (``run.done`` of them already were).

    After each step the processes agree on whether a signal arrived (:mod:`s3a.train.preempt`); if
    so ``checkpoint(run)`` saves the state and :class:`Preempted` propagates.
    """
    model.train()
    base, final = params.lr * params.batch_size / 256, params.min_lr * params.batch_size / 256
    bar = tqdm(total=steps, initial=run.done, desc="train", disable=not env.is_main, mininterval=5)
    for weak, strong, idx in loader:
        if run.done >= steps:
            break
        run.lr = cosine_lr(run.step, total, base, final)
        loss, parts = train_step(
            model,
            teacher,
            optimizer,
            (weak, strong, labels[idx]),
            classifier,
            params,
            run.step,
            run.lr,
            env.device,
        )
        run.step += 1
        run.done += 1
        n = len(idx)
        run.sums += [loss * n, parts["loss_ins"] * n, parts["loss_str"] * n, parts["confident"], n]
        bar.update(1)
        if stop is not None and checkpoint is not None and stop.agreed(lambda v: max_over_ranks(v, env)):
            bar.close()
            checkpoint(run)
    bar.close()
    sums = distributed.all_reduce_sum(run.sums, env)
    samples = max(sums[4], 1.0)
    return {
        "loss": float(sums[0] / samples),
        "loss_ins": float(sums[1] / samples),
        "loss_str": float(sums[2] / samples),
        "confident_fraction": float(sums[3] / samples),
        "samples": int(sums[4]),
        "lr": float(base if math.isnan(run.lr) else run.lr),
    }


def max_over_ranks(value: float, env: distributed.DistEnv) -> float:
    """A 0/1 flag combined over the processes: positive when any process raised it (computed as the
    sum, one all-reduce of one number)."""
    return float(distributed.all_reduce_sum(np.array([value], dtype=np.float64), env)[0])
