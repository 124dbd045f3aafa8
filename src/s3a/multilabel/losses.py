"""Network losses of the multi-label learners (spec 6) and of the CLIP-Decoder head (spec 7).

* :func:`network_loss` — a learner's ``net_loss`` on its latent labels: ``bce``, ``asl`` or
  ``kl_softmax`` (the CDUL reproduction), returning the loss and the predictions ``p`` that the
  latent-label update (:func:`s3a.multilabel.cdul.align.label_step`) reads.
* :func:`asymmetric_loss` — ASL as ML-Decoder trains it: ``p = σ(x)``, the negatives' probability
  shifted by the margin ``m`` (``q = min(1, 1 − p + m)``),
  ``L = −Σ [y·log p + (1−y)·log q] · (1 − p_t)^{γ+·y + γ−·(1−y)}`` with ``p_t = y·p + (1−y)·q``;
  the focusing weight is computed without gradient, logs are clamped at ``eps``, **sum**
  reduction. Soft targets ``y ∈ [0, 1]`` (CDUL pseudo-labels) blend the two terms. With
  ``γ± = 0`` and ``m = 0`` it is the summed binary cross-entropy.
* :func:`alignment_loss` — ``L_clip = mean_i −(1/|P_i|) Σ_{c∈P_i} log softmax_c(κ·⟨v_i, q_c⟩)``
  over the label set, ``P_i`` = labels with target ≥ 0.5, images without such a label left out;
  ``v_i`` (pooled projected memory) and ``q_c`` (projected queries) are unit vectors in the
  head's E-space (:meth:`s3a.multilabel.decoder.head.CLIPDecoderHead.align_embeddings`), so the term trains
  both projections even when the backbone is frozen.

Cost: all are O(B·C) on top of a ``(B, E) x (E, C)`` product for the alignment term (trivial next to
the decoder).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AslParams", "asymmetric_loss", "alignment_loss", "NET_LOSSES", "network_loss"]

#: the ``net_loss`` values of :func:`network_loss`
NET_LOSSES = ("bce", "asl", "kl_softmax")


@dataclass(frozen=True)
class AslParams:
    """Asymmetric-loss settings (config ``multilabel.train.asl``; the defaults ML-Decoder trains with).

    Attributes:
        gamma_neg: focusing exponent γ− of the negatives.
        gamma_pos: focusing exponent γ+ of the positives.
        clip: probability margin ``m`` shifting the negatives (0 disables it).
        eps: clamp of the probabilities inside the logs.
    """

    gamma_neg: float = 4.0
    gamma_pos: float = 0.0
    clip: float = 0.05
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.gamma_neg < 0 or self.gamma_pos < 0 or not 0 <= self.clip < 1 or not self.eps > 0:
            raise ValueError(
                f"asl needs gamma_neg >= 0, gamma_pos >= 0, 0 <= clip < 1 and eps > 0, got {self}"
            )


def asymmetric_loss(
    logits: torch.Tensor, targets: torch.Tensor, params: AslParams = AslParams()
) -> torch.Tensor:
    """ASL summed over images and labels (a scalar); ``logits`` and ``targets`` ``(B, C)``, targets in
    [0, 1] (hard or soft). See the module docstring."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    y = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    q = (1 - p + params.clip).clamp(max=1) if params.clip > 0 else 1 - p
    loss = y * p.clamp(min=params.eps).log() + (1 - y) * q.clamp(min=params.eps).log()
    if params.gamma_neg > 0 or params.gamma_pos > 0:
        with torch.no_grad():
            p_t = y * p + (1 - y) * q
            weight = (1 - p_t).pow(params.gamma_pos * y + params.gamma_neg * (1 - y))
        loss = loss * weight
    return -loss.sum()


def alignment_loss(
    image_vectors: torch.Tensor, query_vectors: torch.Tensor, targets: torch.Tensor, kappa: torch.Tensor
) -> torch.Tensor:
    """``L_clip`` (module docstring): ``image_vectors`` ``(B, E)`` and ``query_vectors`` ``(C, E)``
    unit rows, ``targets`` ``(B, C)``, ``kappa`` the (learnable) scale. Zero (with a graph) when no
    image has a positive."""
    positive = (targets >= 0.5).to(image_vectors.dtype)
    n_pos = positive.sum(dim=1)
    has = n_pos > 0
    logp = F.log_softmax(kappa * image_vectors @ query_vectors.T, dim=1)
    per_image = -(logp * positive).sum(dim=1) / n_pos.clamp(min=1)
    if not bool(has.any()):
        return per_image.sum() * 0.0
    return per_image[has].mean()


def network_loss(
    logits: torch.Tensor, target: torch.Tensor, kind: str, asl: AslParams | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, p)`` for ``(B, C)`` logits and targets, the loss summed over labels and averaged
    over images: ``bce`` — BCE (= Σ_c KL(y_c ‖ p_c) + const per image), ``p = σ(logits)``; ``asl`` —
    :func:`asymmetric_loss` with ``asl`` (default :class:`AslParams`) divided by the batch,
    ``p = σ(logits)``; ``kl_softmax`` (the CDUL reproduction) — ``KL(p ‖ ỹ)`` with
    ``p = softmax(logits)`` and ``ỹ = y / Σ y``."""
    if kind == "bce":
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / len(target)
        return loss, torch.sigmoid(logits.detach())
    if kind == "asl":
        loss = asymmetric_loss(logits, target, asl or AslParams()) / len(target)
        return loss, torch.sigmoid(logits.detach())
    if kind != "kl_softmax":
        raise ValueError(f"unknown net_loss {kind!r}; expected one of {NET_LOSSES}")
    logp = F.log_softmax(logits, dim=-1)
    log_t = (target / target.sum(-1, keepdim=True)).log()
    loss = (logp.exp() * (logp - log_t)).sum(-1).mean()
    return loss, logp.detach().exp()
