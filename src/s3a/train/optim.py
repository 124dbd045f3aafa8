"""Optimisation of self-training (spec 6.4): layer-wise lr decay, the cosine schedule, the teacher's EMA
and the S3A loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from s3a.train.params import TrainParams


def layer_id(name: str, n_layers: int) -> int:
    """Layer of a visual-encoder parameter for layer-wise lr decay (spec 6.4)."""
    if name.startswith(("conv1", "class_embedding", "positional_embedding", "ln_pre", "patch_dropout")):
        return 0
    if name.startswith("transformer.resblocks."):
        return int(name.split(".")[2]) + 1
    return n_layers + 1


def param_groups(model: torch.nn.Module, params: TrainParams) -> list[dict]:
    """AdamW groups: a lr scale per layer, no weight decay on 1-D parameters."""
    n_layers = len(model.transformer.resblocks)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = layer_id(name, n_layers)
        no_decay = p.ndim <= 1
        group = groups.setdefault(
            (layer, no_decay),
            {
                "params": [],
                "lr_scale": params.layer_decay ** (n_layers + 1 - layer),
                "weight_decay": 0.0 if no_decay else params.weight_decay,
            },
        )
        group["params"].append(p)
    return [groups[key] for key in sorted(groups)]


def cosine_lr(step: int, total: int, base: float, final: float) -> float:
    """Per-iteration cosine from ``base`` to ``final`` over ``total`` steps, no warm-up."""
    if total <= 1:
        return base
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * step / (total - 1)))


def ema_decay(step: int, params: TrainParams) -> float:
    """Linear ramp from ``ema_decay_init`` to ``ema_decay`` over ``ema_warmup_iters`` steps."""
    ramp = min(1.0, step / max(1, params.ema_warmup_iters))
    return params.ema_decay_init + (params.ema_decay - params.ema_decay_init) * ramp


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """``teacher = decay * teacher + (1 - decay) * student`` for parameters; buffers are copied."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(decay).add_(s.detach(), alpha=1 - decay)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


def s3a_loss(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    structural: torch.Tensor,
    params: TrainParams,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of spec 6.3 for one batch, and its parts.

    Args:
        teacher_logits, student_logits: ``(B, V)`` logits over the whole vocabulary.
        structural: ``(B,)`` structural labels (vocabulary indices).
    """
    conf, hard = torch.softmax(teacher_logits.float(), dim=-1).max(dim=-1)
    mask = conf > params.conf_threshold
    if mask.any():
        loss_ins = F.cross_entropy(student_logits[mask].float(), hard[mask])
    else:
        loss_ins = student_logits.sum() * 0.0
    loss_str = F.cross_entropy(student_logits.float(), structural)
    loss = params.w_ins * loss_ins + params.w_str * loss_str
    parts = {
        "loss_ins": float(loss_ins.detach()),
        "loss_str": float(loss_str.detach()),
        "confident": float(mask.sum()),
    }
    return loss, parts
