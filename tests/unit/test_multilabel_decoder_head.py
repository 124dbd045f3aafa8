"""CLIP-Decoder head and its losses (MULTILABEL_SPEC 7, 11.1)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s3a.multilabel.decoder.head import (
    CLIPDecoderHead,
    GroupDecoderHead,
    MLDecoderParams,
    group_count,
    patch_tokens,
)
from s3a.multilabel.losses import AslParams, alignment_loss, asymmetric_loss

SMALL = MLDecoderParams(embed_dim=32, heads=4, ff_dim=64, dropout=0.1, query_chunk=7)


def _head(seed: int = 0, params: MLDecoderParams = SMALL) -> CLIPDecoderHead:
    torch.manual_seed(seed)
    return CLIPDecoderHead(24, 16, params).eval()


def _inputs(b: int = 3, p: int = 9, c: int = 30):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(b, p, 24, generator=gen), F.normalize(torch.randn(c, 16, generator=gen), dim=-1)


def test_queries_are_independent():
    head = _head()
    tokens, text = _inputs()
    with torch.no_grad():
        abc = head(tokens, text[:3], chunk=0)
        ab = head(tokens, text[:2], chunk=0)
        ba = head(tokens, text[[1, 0]], chunk=0)
    torch.testing.assert_close(ab, abc[:, :2], atol=1e-6, rtol=0)
    torch.testing.assert_close(ba, abc[:, [1, 0]], atol=1e-6, rtol=0)


def test_chunked_equals_unchunked_forward_and_backward():
    tokens, text = _inputs(c=30)
    with torch.no_grad():
        head = _head()
        full = head(tokens, text, chunk=0)
        for chunk in (1, 7, 29, 30, 64):
            torch.testing.assert_close(head(tokens, text, chunk=chunk), full, atol=1e-6, rtol=0)
    # with gradients the chunks are checkpointed: same loss and same gradients (eval mode: no dropout)
    grads = []
    for chunk in (0, 7):
        head = _head()
        head(tokens, text, chunk=chunk).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in head.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-5)


def test_group_count_and_closed_set_head():
    assert group_count(80) == 80
    assert group_count(1006) == 100
    assert group_count(20, n_groups=4) == 4
    with pytest.raises(ValueError):
        group_count(0)
    tokens, _ = _inputs()
    head = GroupDecoderHead(24, 80, SMALL)
    assert head.n_groups == 80 and head.per_group == 1
    assert head(tokens).shape == (3, 80)
    big = GroupDecoderHead(24, 1006, SMALL)
    assert (big.n_groups, big.per_group) == (100, 11)
    assert big(tokens).shape == (3, 1006)
    assert not any(p is big.group_queries for p in big.parameters())  # fixed, non-trainable queries


def test_alignment_term_trains_both_projections_with_a_frozen_backbone(tiny_clip):
    visual = copy.deepcopy(tiny_clip.model.visual)  # the session fixture stays trainable for other tests
    for p in visual.parameters():
        p.requires_grad_(False)
    images = torch.randn(2, 3, *visual.image_size)
    with torch.no_grad():
        tokens = patch_tokens(visual, images)
    n_patches = (visual.image_size[0] // visual.patch_size[0]) ** 2
    text = F.normalize(torch.randn(5, tokens.shape[-1]), dim=-1)
    assert tokens.shape == (2, n_patches, text.shape[1])
    head = CLIPDecoderHead(tokens.shape[-1], text.shape[1], SMALL)
    v, q = head.align_embeddings(text, tokens=tokens)
    targets = torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    alignment_loss(v, q, targets, head.kappa).backward()
    assert head.memory_proj.weight.grad.abs().sum() > 0
    assert head.query_proj.weight.grad.abs().sum() > 0
    assert head.log_kappa.grad.abs() > 0
    assert all(p.grad is None for p in visual.parameters())


def test_patch_tokens_rejects_a_tower_without_tokens():
    with pytest.raises(ValueError, match="ViT"):
        patch_tokens(torch.nn.Linear(2, 2), torch.zeros(1, 2))


def test_asl_is_bce_in_its_limit_and_sums():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 11, generator=gen) * 3
    hard = (torch.rand(6, 11, generator=gen) > 0.7).float()
    soft = torch.rand(6, 11, generator=gen)
    plain = AslParams(gamma_neg=0, gamma_pos=0, clip=0)
    for y in (hard, soft):
        bce = F.binary_cross_entropy_with_logits(logits, y, reduction="sum")
        torch.testing.assert_close(asymmetric_loss(logits, y, plain), bce, atol=1e-4, rtol=1e-5)
    # sum reduction: the loss of a batch is the sum of its rows' losses
    parts = sum(asymmetric_loss(logits[i : i + 1], hard[i : i + 1]) for i in range(6))
    torch.testing.assert_close(asymmetric_loss(logits, hard), parts)
    # default ASL down-weights easy negatives: less than BCE
    assert asymmetric_loss(logits, hard) < F.binary_cross_entropy_with_logits(logits, hard, reduction="sum")


def test_asl_focusing_weight_carries_no_gradient():
    x = torch.tensor([[0.3, -1.2]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0]])
    params = AslParams(gamma_neg=4, gamma_pos=1, clip=0.05)
    asymmetric_loss(x, y, params).backward()
    p = torch.sigmoid(x.detach())
    q = (1 - p + 0.05).clamp(max=1)
    # d/dx of -w·log p with w constant: -w·(1 - p); of -w·log q: w·p·(1-p)/q
    w_pos, w_neg = (1 - p[0, 0]) ** 1, (1 - q[0, 1]) ** 4
    expected = torch.tensor([[-w_pos * (1 - p[0, 0]), w_neg * p[0, 1] * (1 - p[0, 1]) / q[0, 1]]])
    torch.testing.assert_close(x.grad, expected, atol=1e-6, rtol=1e-5)


def test_alignment_loss_by_hand():
    v = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1)
    q = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), dim=-1)
    y = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.8, 0.0], [0.0, 0.0, 0.2]])  # image 2 has no positive
    kappa = torch.tensor(2.0)
    logp = F.log_softmax(kappa * v @ q.T, dim=1)
    expected = (-(logp[0, 0] + logp[0, 1]) / 2 - logp[1, 1]) / 2
    torch.testing.assert_close(alignment_loss(v, q, y, kappa), expected)
    assert float(alignment_loss(v, q, torch.zeros(3, 3), kappa)) == 0.0


def test_encode_patch_tokens_reads_files_like_the_embedder(tiny_clip, tmp_path):
    from PIL import Image

    from s3a.embed import EmbedParams
    from s3a.multilabel.decoder.head import encode_patch_tokens

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    paths.insert(1, str(tmp_path / "bad.png"))
    params = EmbedParams(batch_size=2, num_workers=0, decoder="pil")
    index, tokens, failed = encode_patch_tokens(
        tiny_clip.model, tiny_clip.preprocess, paths, params, dtype=np.float32
    )
    assert index.tolist() == [0, 2, 3] and [p for p, _ in failed] == [paths[1]]
    with torch.no_grad():
        images = torch.stack([tiny_clip.preprocess(Image.open(paths[i]).convert("RGB")) for i in (0, 2, 3)])
        expected = patch_tokens(tiny_clip.model.visual, images).numpy()
    np.testing.assert_allclose(tokens, expected, atol=1e-5)
