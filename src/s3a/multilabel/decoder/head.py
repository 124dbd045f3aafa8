"""ML-Decoder-style heads (spec 7): the CLIP-Decoder head with CLIP text queries, and group decoding.

Both heads share one decoder: the image's spatial tokens ``(B, P, F)`` go through ``Linear(F→E)`` +
ReLU (the *memory*); each query passes a layer with **no self-attention** (a dropout residual and a
LayerNorm), then cross-attention over the memory (``heads`` heads, dropout) + residual + LayerNorm
and a ReLU feed-forward (``ff_dim``) + residual + LayerNorm.

* :class:`CLIPDecoderHead` (``learner: mldecoder``, zero-shot capable): one query per label, the
  frozen CLIP text embedding ``W_c`` through ``Linear(D→E)`` + ReLU; a single shared ``E→1``
  projection and a scalar bias give each label's logit, so the label set can change at test time
  (train on the 925 seen NUS-WIDE labels, score the 81 unseen, or all 20,071 vocabulary names).
  Queries never see each other, so labels are processed in chunks of ``query_chunk`` with
  identical results (in eval mode; in train mode dropout draws differ). With gradients enabled each
  chunk is recomputed in the backward pass (activation checkpointing), so training memory holds one
  chunk's decoder activations plus the ``(B, C)`` logits instead of ``C`` labels' activations.
* :class:`GroupDecoderHead` (closed set, ML-Decoder as released): ``G = group_count(C)`` fixed,
  non-trainable random queries; group g's output goes through its own ``E × ⌈C/G⌉`` matrix to
  ``⌈C/G⌉`` logits, truncated to C, plus a per-label bias.

Memory (the image side) is a CLIP ViT's patch tokens mapped into CLIP space (:func:`patch_tokens`:
``ln_post`` then ``proj``), precomputed once with the backbone frozen (the default); training and
prediction on those tokens are in :mod:`s3a.multilabel.decoder.train`.

Cost of one forward, B images, P tokens, C labels, E = 768, FF = 2048: about
``2·B·C·(2·P·E + 2·E² + 2·E·FF)`` FLOP (B = 64, P = 196, C = 20,071: ~12 TFLOP; C = 1,006: ~0.6
TFLOP); activation memory per chunk about ``B · query_chunk · (4·E + FF)`` floats (B = 64, chunk
2,048: ~2.7 GB fp32), logits ``B · C``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "MAX_GROUPS",
    "MLDecoderParams",
    "group_count",
    "DecoderLayer",
    "CLIPDecoderHead",
    "GroupDecoderHead",
    "patch_tokens",
    "encode_patch_tokens",
]

log = logging.getLogger(__name__)
#: ML-Decoder's cap on the number of group queries
MAX_GROUPS = 100


@dataclass(frozen=True)
class MLDecoderParams:
    """The decoder head (config ``multilabel.train.mldecoder``).

    Attributes:
        embed_dim: E, the decoder width.
        heads: attention heads of the cross-attention.
        ff_dim: hidden width of the feed-forward block.
        dropout: dropout of the residual branches and the attention weights.
        query_chunk: labels per decoder pass (results identical for any chunk in eval mode).
        clip_loss_weight: α, weight of the alignment term ``L_clip``.
        cls_loss_weight: β, weight of the classification loss (ASL).
    """

    embed_dim: int = 768
    heads: int = 8
    ff_dim: int = 2048
    dropout: float = 0.1
    query_chunk: int = 2048
    clip_loss_weight: float = 1.0
    cls_loss_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.embed_dim < 1 or self.heads < 1 or self.embed_dim % self.heads:
            raise ValueError(
                f"mldecoder.embed_dim ({self.embed_dim}) must be a positive multiple of heads ({self.heads})"
            )
        if self.ff_dim < 1 or self.query_chunk < 1 or not 0 <= self.dropout < 1:
            raise ValueError("mldecoder needs ff_dim >= 1, query_chunk >= 1 and 0 <= dropout < 1")
        if self.clip_loss_weight < 0 or self.cls_loss_weight < 0:
            raise ValueError("mldecoder loss weights must be >= 0")


def group_count(n_labels: int, n_groups: int = -1) -> int:
    """Number of group queries of the closed-set head: ``n_groups`` when positive (at most C), else
    ML-Decoder's ``min(100, C)`` (its ``-1`` means 100 groups, not one per label, for C > 100)."""
    if n_labels < 1:
        raise ValueError(f"need at least one label, got {n_labels}")
    return min(n_labels, n_groups if n_groups > 0 else MAX_GROUPS)


class DecoderLayer(nn.Module):
    """One decoder layer without self-attention: queries ``(B, Q, E)`` over memory ``(B, P, E)``."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.drop0 = nn.Dropout(dropout)
        self.norm0 = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.drop1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, ff_dim)
        self.ff2 = nn.Linear(ff_dim, dim)
        self.drop2 = nn.Dropout(dropout)
        self.drop3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.norm0(queries + self.drop0(queries))  # where self-attention was
        attended, _ = self.cross(x, memory, memory, need_weights=False)
        x = self.norm1(x + self.drop1(attended))
        x = self.norm2(x + self.drop3(self.ff2(self.drop2(F.relu(self.ff1(x))))))
        return x


class _Decoder(nn.Module):
    """Memory projection plus one :class:`DecoderLayer` (shared by both heads)."""

    def __init__(self, token_dim: int, params: MLDecoderParams) -> None:
        super().__init__()
        self.params = params
        self.memory_proj = nn.Linear(token_dim, params.embed_dim)
        self.layer = DecoderLayer(params.embed_dim, params.heads, params.ff_dim, params.dropout)

    def memory(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, P, F)`` tokens -> ``(B, P, E)`` memory ``ReLU(L_m t)``."""
        if tokens.ndim != 3:
            raise ValueError(f"tokens must be (B, P, F), got {tuple(tokens.shape)}")
        return F.relu(self.memory_proj(tokens))


class CLIPDecoderHead(_Decoder):
    """Label-query decoder (module docstring): ``forward(tokens (B, P, F), text (C, D)) -> (B, C)``
    logits, the text embeddings being the (frozen) CLIP label embeddings of any label set."""

    def __init__(self, token_dim: int, text_dim: int, params: MLDecoderParams = MLDecoderParams()) -> None:
        super().__init__(token_dim, params)
        self.query_proj = nn.Linear(text_dim, params.embed_dim)
        self.out = nn.Linear(params.embed_dim, 1)  # shared by every label: one weight row, one bias
        self.log_kappa = nn.Parameter(torch.tensor(math.log(10.0)))  # alignment scale κ, init 10

    def queries(self, text: torch.Tensor) -> torch.Tensor:
        """``(C, D)`` text embeddings -> ``(C, E)`` queries ``ReLU(L_q W_c)``."""
        if text.ndim != 2:
            raise ValueError(f"text embeddings must be (C, D), got {tuple(text.shape)}")
        return F.relu(self.query_proj(text))

    def _chunk_logits(self, memory: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        q = queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        return self.out(self.layer(q, memory)).squeeze(-1)

    def decode(self, memory: torch.Tensor, queries: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """``(B, C)`` logits from a memory ``(B, P, E)`` and queries ``(C, E)``, ``chunk`` labels at a
        time (``None``: ``query_chunk``; ``0``: all at once). Checkpointed per chunk when gradients
        are enabled and there is more than one chunk."""
        chunk = self.params.query_chunk if chunk is None else chunk
        n = queries.shape[0]
        if chunk <= 0 or chunk >= n:
            return self._chunk_logits(memory, queries)
        grad = torch.is_grad_enabled()
        parts = []
        for s in range(0, n, chunk):
            q = queries[s : s + chunk]
            if grad:
                parts.append(checkpoint(self._chunk_logits, memory, q, use_reentrant=False))
            else:
                parts.append(self._chunk_logits(memory, q))
        return torch.cat(parts, dim=1)

    def forward(self, tokens: torch.Tensor, text: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        return self.decode(self.memory(tokens), self.queries(text), chunk)

    @property
    def kappa(self) -> torch.Tensor:
        return self.log_kappa.exp()

    def align_embeddings(
        self, text: torch.Tensor, tokens: torch.Tensor | None = None, memory: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v (B, E), q (C, E))`` unit vectors of the alignment term: ``v`` the mean over tokens of
        the memory (from ``tokens`` or a ready ``memory``), ``q`` the projected queries."""
        if memory is None:
            if tokens is None:
                raise ValueError("align_embeddings needs tokens or memory")
            memory = self.memory(tokens)
        return F.normalize(memory.mean(dim=1), dim=-1), F.normalize(self.queries(text), dim=-1)


class GroupDecoderHead(_Decoder):
    """Closed-set ML-Decoder (module docstring): ``forward(tokens (B, P, F)) -> (B, C)`` logits."""

    def __init__(
        self,
        token_dim: int,
        n_labels: int,
        params: MLDecoderParams = MLDecoderParams(),
        n_groups: int = -1,
        seed: int = 0,
    ) -> None:
        super().__init__(token_dim, params)
        self.n_labels = n_labels
        self.n_groups = group_count(n_labels, n_groups)
        self.per_group = math.ceil(n_labels / self.n_groups)
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("group_queries", torch.randn(self.n_groups, params.embed_dim, generator=gen))
        bound = 1.0 / math.sqrt(params.embed_dim)
        self.group_weight = nn.Parameter(
            torch.empty(self.n_groups, params.embed_dim, self.per_group).uniform_(
                -bound, bound, generator=gen
            )
        )
        self.bias = nn.Parameter(torch.zeros(n_labels))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        memory = self.memory(tokens)
        q = self.group_queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        h = self.layer(q, memory)  # (B, G, E)
        logits = torch.einsum("bge,gek->bgk", h, self.group_weight).flatten(1)
        return logits[:, : self.n_labels] + self.bias


def patch_tokens(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(B, P, D)`` patch tokens of an open_clip ViT visual tower in CLIP space: the tokens after
    ``ln_post`` (also applied when the model normalises after pooling), then ``@ proj``. Runs under
    the caller's grad mode (wrap in ``torch.no_grad()`` for a frozen backbone).

    Raises:
        ValueError: the tower has no patch tokens (ResNet CLIP, attention-pool towers).
    """
    if not hasattr(visual, "output_tokens") or not hasattr(visual, "ln_post"):
        raise ValueError(
            f"{type(visual).__name__} gives no patch tokens; the mldecoder learner needs a ViT CLIP model"
        )
    if getattr(visual, "attn_pool", None) is not None:
        raise ValueError("attention-pooled vision towers (CoCa) are not supported by the mldecoder learner")
    before = visual.output_tokens
    visual.output_tokens = True
    try:
        _, tokens = visual(images)
    finally:
        visual.output_tokens = before
    if getattr(visual, "final_ln_after_pool", False):
        tokens = visual.ln_post(tokens)
    if visual.proj is not None:
        tokens = tokens @ visual.proj
    return tokens


def encode_patch_tokens(
    model: nn.Module,
    transform,
    paths: list[str],
    params=None,
    device: torch.device | None = None,
    dtype: np.dtype = np.float16,
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Patch tokens (:func:`patch_tokens`) of image files, through the project's one image reader
    (:func:`s3a.embed.image_batches`, the ``embed_images`` loader and decoders; bf16 autocast on CUDA).

    Returns:
        ``(index (N',) int64 positions into paths, tokens (N', P, D) dtype, failed [(path, reason)])``;
        unreadable images are skipped and reported. Memory ``N · P · D`` of ``dtype``: ViT-B/16 on
        NUS-WIDE train (150k x 196 x 512) is 30 GB in float16 — write it in chunks of paths.
    """
    from s3a.embed import EmbedParams, image_autocast, image_batches

    params = params or EmbedParams()
    device = device or next(model.parameters()).device
    index, chunks, failed = [], [], []
    with torch.inference_mode(), image_autocast(device):
        for idx, images, bad in image_batches(paths, transform, params, device, desc="patch tokens"):
            failed.extend((paths[i], why) for i, why in bad)
            if images is not None:
                chunks.append(patch_tokens(model.visual, images).float().cpu().numpy().astype(dtype))
                index.append(idx.numpy())
    for path, why in failed:
        log.warning("skipped unreadable image %s (%s)", path, why)
    if not chunks:
        return np.zeros(0, np.int64), np.zeros((0, 0, 0), dtype), failed
    return np.concatenate(index).astype(np.int64), np.concatenate(chunks), failed
