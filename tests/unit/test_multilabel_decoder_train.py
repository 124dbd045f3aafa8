"""Training and prediction of the CLIP-Decoder head on precomputed tokens (MULTILABEL_SPEC 7)."""

from __future__ import annotations

import numpy as np

from s3a.multilabel.decoder.head import MLDecoderParams
from s3a.multilabel.decoder.train import HeadTrainParams, head_topk, predict_head, train_head
from s3a.multilabel.metrics import mean_average_precision


def test_training_fits_and_predictions_agree():
    """Planted tokens: label c is present when its text vector is one of the image's tokens."""
    rng = np.random.default_rng(0)
    c, d, n, p = 8, 16, 96, 6
    text = rng.normal(size=(c, d)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    y = np.zeros((n, c), np.float32)
    tokens = rng.normal(scale=0.3, size=(n, p, d)).astype(np.float32)
    for i in range(n):
        present = rng.choice(c, 2, replace=False)
        y[i, present] = 1
        tokens[i, :2] += text[present]
    params = MLDecoderParams(embed_dim=32, heads=4, ff_dim=64, dropout=0.0)
    res = train_head(
        tokens, y, text, HeadTrainParams(epochs=60, batch_size=16, lr=5e-3), params, progress=False
    )
    hist = res.history
    assert list(hist.columns) == ["epoch", "loss", "loss_cls", "loss_clip", "kappa"]
    # measured: ASL 2.21 -> 0.03 per image, L_clip 2.19 -> 0.80, train mAP 100
    assert hist["loss_cls"].iloc[-1] < 0.1 * hist["loss_cls"].iloc[0]
    assert hist["loss_clip"].iloc[-1] < 0.6 * hist["loss_clip"].iloc[0]
    scores = predict_head(res.head, tokens, text, image_chunk=40)
    assert scores.shape == (n, c) and scores.dtype == np.float64  # no tie at 1.0 above logit 16.6
    assert mean_average_precision(y, scores)[0] > 95
    idx, val = head_topk(res.head, tokens, text, k=2, image_chunk=40)
    np.testing.assert_allclose(val, -np.sort(-scores, axis=1)[:, :2], atol=1e-6)
    assert (np.take_along_axis(y, idx, axis=1) == 1).mean() > 0.9


def test_resume_after_a_kill_gives_identical_results(tmp_path, monkeypatch):
    """Killed after epoch 2 of 4 and rerun: the same head, history and predictions as one run
    (dropout on, so the saved torch random state matters as much as the shuffle's)."""
    import pytest
    import torch

    import s3a.multilabel.decoder.train as headtrain

    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(40, 5, 12)).astype(np.float16)
    y = (rng.random((40, 6)) < 0.3).astype(np.float32)
    text = rng.normal(size=(6, 10)).astype(np.float32)
    params = HeadTrainParams(epochs=4, batch_size=16, lr=1e-3)
    head_params = MLDecoderParams(embed_dim=16, heads=2, ff_dim=32, dropout=0.2, query_chunk=4)
    whole = train_head(tokens, y, text, params, head_params, progress=False)
    state = str(tmp_path / "state.pt")
    real_save = headtrain.save_state

    def save_then_die(path, st):
        real_save(path, st)
        if st["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(headtrain, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_head(tokens, y, text, params, head_params, progress=False, state_path=state)
    monkeypatch.setattr(headtrain, "save_state", real_save)
    torch.manual_seed(123)  # whatever the caller's generator holds, the resumed run restores its own
    resumed = train_head(tokens, y, text, params, head_params, progress=False, state_path=state)
    assert resumed.history["epoch"].tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(resumed.history.to_numpy(), whole.history.to_numpy())
    for a, b in zip(resumed.head.state_dict().values(), whole.head.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a finished state resumes to the end at once; other inputs start afresh
    again = train_head(tokens, y, text, params, head_params, progress=False, state_path=state)
    assert torch.equal(again.head.out.weight, whole.head.out.weight)
    other = train_head(tokens, 1 - y, text, params, head_params, progress=False, state_path=state)
    assert other.history["epoch"].tolist() == [1, 2, 3, 4]
    assert not torch.equal(other.head.out.weight, whole.head.out.weight)
