"""Zero-shot classification over a text classifier: the logit head and the chunked argmax (torch only).

Discovery imports this module, not :mod:`s3a.embed`, so it needs neither torchvision nor PIL.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from s3a.device import pick_device

__all__ = ["LOGIT_SCALE", "autocast_off", "vocabulary_logits", "zero_shot"]

#: CLIP's logit scale (spec 2.3): logits are ``100 * cos``
LOGIT_SCALE = 100.0


def autocast_off(device: torch.device):
    """Autocast off on ``device`` (inside an outer autocast region too): the context of fp32 text
    encoding and logits over names, whose rounding decides labels."""
    return torch.autocast(device.type if device.type in ("cuda", "cpu") else "cpu", enabled=False)


def vocabulary_logits(
    features: torch.Tensor, classifier: torch.Tensor, scale: float = LOGIT_SCALE
) -> torch.Tensor:
    """``scale * normalize(features) @ classifier.T`` in fp32, autocast off: ``(B, C)`` float32.

    The one head of every logit over the names that decides a label or a confidence (training
    teacher and student, zero-shot, the vote, evaluation). ``features`` ``(B, D)`` may come from an
    encoder run in bf16; ``classifier`` ``(C, D)`` holds unit-norm rows. Gradients flow to ``features``.
    """
    with autocast_off(features.device):
        return scale * F.normalize(features.float(), dim=-1) @ classifier.float().T


def zero_shot(
    image_embeddings: np.ndarray,
    classifier: np.ndarray,
    candidates: np.ndarray | None = None,
    scale: float = LOGIT_SCALE,
    chunk: int = 8192,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of ``softmax(scale * z @ W.T)`` for every image, computed in chunks (fp32).

    Memory is bounded whatever ``N`` is: two ``(chunk, C)`` float32 blocks (about 1.3 GB at the
    default chunk and C = 20,071), never the ``N x C`` matrix (103 GB at ImageNet-1K's 1.28M images).

    Args:
        image_embeddings: ``(N, D)`` unit-norm.
        classifier: ``(C, D)`` unit-norm rows.
        candidates: optional ``(K,)`` row indices of ``classifier`` to restrict the argmax to
            (the softmax is then over those rows only).

    Returns:
        ``(pred, prob)``: ``(N,)`` int64 row indices into ``classifier`` and ``(N,)`` float32
        probabilities of the chosen row.
    """
    dev = pick_device(device)
    rows = np.arange(len(classifier)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    w = torch.from_numpy(np.ascontiguousarray(classifier[rows], dtype=np.float32)).to(dev)
    preds, probs = [], []
    with torch.inference_mode():
        for s in range(0, len(image_embeddings), chunk):
            # a copy of the chunk: the embeddings may be a read-only memmap
            z = torch.from_numpy(np.array(image_embeddings[s : s + chunk], np.float32)).to(dev)
            p = torch.softmax(vocabulary_logits(z, w, scale), dim=-1)
            best, arg = p.max(dim=-1)
            preds.append(arg.cpu())
            probs.append(best.cpu())
    if not preds:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return rows[torch.cat(preds).numpy()], torch.cat(probs).numpy().astype(np.float32)
