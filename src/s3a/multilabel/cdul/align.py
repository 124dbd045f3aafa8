"""Latent-label updates of gradient-alignment training (spec 6), shared by every learner.

State: a network with outputs ``p = σ(f(x)) ∈ (0,1)^C`` and latent labels ``y_i ∈ [ε, 1−ε]^C``
initialised to the train split's ``S_final``. Per batch: (1) a network step on ``L_net(p, y)`` with y
fixed (:func:`s3a.multilabel.losses.network_loss`); (2) in *update epochs* only (1-based
``e > warmup`` and ``e % every == 0``), with the predictions of the same forward (before the step)::

    u = logit(y);  g = ∂L_lab(y, p)/∂y;  ψ(y) = exp(−(y − ½)² / 2σ²) / (σ√2π)
    u ← u − η · ψ(y) ⊙ g;   y ← clamp(σ(u), ε, 1 − ε)

``bernoulli_kl`` (default): ``L_lab = Σ_c KL(y_c ‖ p_c)``, ``g = logit(y) − logit(p)``, i.e. the
label's logit moves towards the network's by the fraction ``η·ψ(y)`` (0.352-0.399 for σ = 1).
``categorical_kl`` (the CDUL reproduction): ``KL(ỹ ‖ p̃)`` with ``~`` rescaling to sum 1, whose
gradient is ``g_c = (log(ỹ_c / p̃_c) − KL) / Σ_k y_k``.

``reduction``: ``per_image`` (default, spec 6) gives each image the gradient of its own loss;
``repro`` reproduces the CDUL reproduction, whose label loss is the *mean* over the batch (torchmetrics
``KLDivergence``, ``reduction="mean"``), so each image's gradient is ``g / B`` with B the images in
the batch (the last, shorter batch divides by its own size; under DDP, B is the batch on each
process, the reproduction running on one GPU). With its batch of 8 and η = 1 the labels move 8x
less per update than with ``per_image``.

No ground truth enters any decision: updates stop after ``max_updates`` update epochs or once an
update epoch's mean ``|Δy|`` falls below ``min_label_change`` (:class:`UpdateCounter`); the model
is the last epoch's. The learners: ``linear`` (:mod:`s3a.multilabel.cdul.linear`), ``finetune`` and
``mldecoder`` (:mod:`s3a.multilabel.imagetrain.loop`). Cost: O(B·C) per batch, on the batch's rows only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "EPS",
    "LABEL_LOSSES",
    "LABEL_REDUCTIONS",
    "LabelUpdateParams",
    "psi",
    "label_gradient",
    "update_labels",
    "is_update_epoch",
    "label_step",
    "UpdateCounter",
]

log = logging.getLogger(__name__)
#: labels and predictions are clamped to ``[EPS, 1 − EPS]``
EPS = 1e-4
LABEL_LOSSES = ("bernoulli_kl", "categorical_kl")
#: how the label loss reduces over a batch: ``per_image`` (spec 6) or ``repro`` (the batch mean)
LABEL_REDUCTIONS = ("per_image", "repro")


@dataclass(frozen=True)
class LabelUpdateParams:
    """Latent-label updates (config ``multilabel.train.label_update``).

    Attributes:
        enabled: False trains on the fixed initial labels.
        loss: ``bernoulli_kl`` or ``categorical_kl`` (see the module docstring).
        every: update in epochs ``e`` with ``e % every == 0``.
        warmup: and ``e > warmup``.
        sigma: σ of the Gaussian weight ψ.
        step: η.
        max_updates: stop updating after this many update epochs (``None``: no limit).
        min_label_change: stop updating once an update epoch's mean ``|Δy|`` is below this.
        reduction: ``per_image`` (each image's own gradient) or ``repro`` (the CDUL reproduction's
            batch-mean loss: the gradient divided by the batch's image count; module docstring).
    """

    enabled: bool = True
    loss: str = "bernoulli_kl"
    every: int = 10
    warmup: int = 0
    sigma: float = 1.0
    step: float = 1.0
    max_updates: int | None = None
    min_label_change: float = 0.0
    reduction: str = "per_image"

    def __post_init__(self) -> None:
        if self.loss not in LABEL_LOSSES:
            raise ValueError(f"label_update.loss must be one of {LABEL_LOSSES}, got {self.loss!r}")
        if self.reduction not in LABEL_REDUCTIONS:
            raise ValueError(
                f"label_update.reduction must be one of {LABEL_REDUCTIONS}, got {self.reduction!r}"
            )
        if self.every < 1 or self.warmup < 0 or self.sigma <= 0:
            raise ValueError("label_update needs every >= 1, warmup >= 0 and sigma > 0")


def psi(y: np.ndarray | torch.Tensor, sigma: float = 1.0):
    """Gaussian weight ``N(y; 0.5, σ²)`` elementwise (0.352-0.399 on [0, 1] for σ = 1)."""
    lib = torch if isinstance(y, torch.Tensor) else np
    return lib.exp(-((y - 0.5) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))


def _logit(x):
    lib = torch if isinstance(x, torch.Tensor) else np
    return lib.log(x) - lib.log1p(-x)


def label_gradient(y: np.ndarray | torch.Tensor, p: np.ndarray | torch.Tensor, loss: str = "bernoulli_kl"):
    """``∂L_lab(y, p)/∂y`` for ``(B, C)`` labels and predictions in (0, 1) (see the module docstring)."""
    lib = torch if isinstance(y, torch.Tensor) else np
    if loss == "bernoulli_kl":
        return _logit(y) - _logit(p)
    if loss == "categorical_kl":
        total = y.sum(-1, keepdims=True) if lib is np else y.sum(-1, keepdim=True)
        yt = y / total
        pt = p / (p.sum(-1, keepdims=True) if lib is np else p.sum(-1, keepdim=True))
        log_ratio = lib.log(yt) - lib.log(pt)
        kl = (yt * log_ratio).sum(-1, keepdims=True) if lib is np else (yt * log_ratio).sum(-1, keepdim=True)
        return (log_ratio - kl) / total
    raise ValueError(f"unknown label loss {loss!r}; expected one of {LABEL_LOSSES}")


def update_labels(y, p, params: LabelUpdateParams = LabelUpdateParams()):
    """One latent-label step: ``y ← clamp(σ(logit(y) − η ψ(y) g), ε, 1 − ε)``; ``(B, C)`` in and out,
    the B rows one batch (``reduction: repro`` divides ``g`` by B).

    ``p`` is clamped to ``[ε, 1 − ε]`` before use so saturated predictions stay finite.
    """
    lib = torch if isinstance(y, torch.Tensor) else np
    y = lib.clip(y, EPS, 1 - EPS) if lib is np else y.clamp(EPS, 1 - EPS)
    p = lib.clip(p, EPS, 1 - EPS) if lib is np else p.clamp(EPS, 1 - EPS)
    step = params.step / (len(y) if params.reduction == "repro" else 1)
    u = _logit(y) - step * psi(y, params.sigma) * label_gradient(y, p, params.loss)
    out = 1.0 / (1.0 + lib.exp(-u))
    return lib.clip(out, EPS, 1 - EPS) if lib is np else out.clamp(EPS, 1 - EPS)


def is_update_epoch(epoch: int, params: LabelUpdateParams) -> bool:
    """Whether 1-based ``epoch`` updates the labels (``e > warmup`` and ``e % every == 0``)."""
    return params.enabled and epoch > params.warmup and epoch % params.every == 0


def label_step(
    y: torch.Tensor, p: torch.Tensor, params: LabelUpdateParams
) -> tuple[torch.Tensor, float, float]:
    """One batch of an update epoch: ``(new y, Σ KL(y ‖ p) over the batch's cells, Σ |Δy|)``.

    ``y`` are the batch's current latent labels and ``p`` the network's predictions of the same
    forward (before its step), both ``(B, C)``; the KL sum (Bernoulli, per cell) is the history's
    ``loss_label``. Shared by every learner (``linear``, ``finetune``, ``mldecoder``).
    """
    pc = p.clamp(EPS, 1 - EPS)
    lab = y * (y / pc).log() + (1 - y) * ((1 - y) / (1 - pc)).log()
    new = update_labels(y, p, params)
    return new, float(lab.sum()), float((new - y).abs().sum())


@dataclass
class UpdateCounter:
    """Which epochs update the labels, and when updates stop (``max_updates``, ``min_label_change``);
    its two counters belong in a learner's resume state.

    Attributes:
        params: the schedule.
        n_updates: update epochs done.
        updating: False once a stopping rule fired (labels frozen for the rest of the run).
    """

    params: LabelUpdateParams
    n_updates: int = 0
    updating: bool = True

    def due(self, epoch: int) -> bool:
        """Whether 1-based ``epoch`` updates the labels."""
        limit = self.params.max_updates
        return (
            self.updating
            and is_update_epoch(epoch, self.params)
            and (limit is None or self.n_updates < limit)
        )

    def record(self, epoch: int, mean_dy: float) -> None:
        """Count a finished update epoch whose mean ``|Δy|`` was ``mean_dy``; apply the stopping rules."""
        self.n_updates += 1
        if self.params.max_updates is not None and self.n_updates >= self.params.max_updates:
            self.updating = False
        if mean_dy < self.params.min_label_change:
            self.updating = False
            log.info("epoch %d: mean |dy| %.2e < min_label_change; labels frozen", epoch, mean_dy)
