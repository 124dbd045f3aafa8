"""Latent-label updates (``labels``), the network losses and the ``linear`` gradient-alignment learner
(MULTILABEL_SPEC 6, 11.1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s3a.multilabel.cdul.align import (
    EPS,
    LabelUpdateParams,
    is_update_epoch,
    label_gradient,
    psi,
    update_labels,
)
from s3a.multilabel.cdul.linear import LinearParams, predict_linear, train_linear
from s3a.multilabel.losses import AslParams, network_loss
from s3a.multilabel.metrics import mean_average_precision


def test_psi_range():
    y = np.linspace(0, 1, 101)
    v = psi(y, 1.0)
    assert abs(v.min() - 0.3521) < 1e-3 and abs(v.max() - 0.3989) < 1e-3


@pytest.mark.parametrize("loss", ["bernoulli_kl", "categorical_kl"])
def test_update_is_identity_when_p_equals_y(loss):
    rng = np.random.default_rng(0)
    y = rng.uniform(0.01, 0.99, size=(20, 6))
    np.testing.assert_allclose(update_labels(y, y, LabelUpdateParams(loss=loss)), y, atol=1e-9)


def test_update_stays_in_bounds_and_moves_logit_by_psi_fraction():
    rng = np.random.default_rng(1)
    y = rng.uniform(0, 1, size=(200, 8))
    p = rng.uniform(0, 1, size=(200, 8))
    p[0, 0], y[1, 1] = 1.0, 0.0  # saturated inputs stay finite
    new = update_labels(y, p)
    assert np.isfinite(new).all() and new.min() >= EPS and new.max() <= 1 - EPS
    yc, pc = np.clip(y, EPS, 1 - EPS), np.clip(p, EPS, 1 - EPS)
    lo = lambda x: np.log(x) - np.log1p(-x)  # noqa: E731
    frac = (lo(np.clip(new, EPS, 1 - EPS)) - lo(yc)) / (lo(pc) - lo(yc))
    ok = np.abs(lo(pc) - lo(yc)) > 1e-3
    ok &= (new > EPS) & (new < 1 - EPS)  # not clamped
    np.testing.assert_allclose(frac[ok], psi(yc, 1.0)[ok], rtol=1e-6)
    assert frac[ok].min() >= 0.352 and frac[ok].max() <= 0.399


def test_categorical_gradient_matches_autograd():
    rng = np.random.default_rng(2)
    y = torch.tensor(rng.uniform(0.05, 0.95, size=(4, 5)), requires_grad=True)
    p = torch.tensor(rng.uniform(0.05, 0.95, size=(4, 5)))
    yt, pt = y / y.sum(-1, keepdim=True), p / p.sum(-1, keepdim=True)
    (yt * (yt / pt).log()).sum().backward()
    np.testing.assert_allclose(
        label_gradient(y.detach().numpy(), p.numpy(), "categorical_kl"), y.grad.numpy(), atol=1e-10
    )
    np.testing.assert_allclose(
        label_gradient(y.detach(), p, "categorical_kl").numpy(), y.grad.numpy(), atol=1e-10
    )


@pytest.mark.parametrize("loss", ["bernoulli_kl", "categorical_kl"])
def test_repro_reduction_steps_on_the_batch_mean_loss(loss):
    # the CDUL reproduction's label loss is the batch mean (torchmetrics KLDivergence): its update is
    # the per-image one with the gradient of the mean, i.e. each image's gradient divided by B
    rng = np.random.default_rng(3)
    b = 8
    y = torch.tensor(rng.uniform(0.05, 0.95, size=(b, 5)), requires_grad=True)
    p = torch.tensor(rng.uniform(0.05, 0.95, size=(b, 5)))
    if loss == "bernoulli_kl":
        per_image = (y * (y / p).log() + (1 - y) * ((1 - y) / (1 - p)).log()).sum(-1)
    else:
        yt, pt = y / y.sum(-1, keepdim=True), p / p.sum(-1, keepdim=True)
        per_image = (yt * (yt / pt).log()).sum(-1)
    per_image.mean().backward()
    yy = y.detach().numpy()
    u0 = np.log(yy) - np.log1p(-yy)
    for step in (1.0, 0.5):
        repro = update_labels(yy, p.numpy(), LabelUpdateParams(loss=loss, step=step, reduction="repro"))
        # logit(y) moves by -η ψ(y) ∂(batch mean)/∂y, B = 8 times less than per_image
        expected = u0 - step * psi(yy, 1.0) * y.grad.numpy()
        np.testing.assert_allclose(np.log(repro) - np.log1p(-repro), expected, atol=1e-9)
        per = update_labels(yy, p.numpy(), LabelUpdateParams(loss=loss, step=step))
        np.testing.assert_allclose(
            np.log(repro) - np.log1p(-repro) - u0, (np.log(per) - np.log1p(-per) - u0) / b, atol=1e-9
        )
    # torch path: the same
    got = update_labels(y.detach(), p, LabelUpdateParams(loss=loss, reduction="repro"))
    np.testing.assert_allclose(
        got.numpy(), update_labels(yy, p.numpy(), LabelUpdateParams(loss=loss, reduction="repro"))
    )
    with pytest.raises(ValueError, match="reduction must be one of"):
        LabelUpdateParams(reduction="mean")


def test_update_epochs():
    p = LabelUpdateParams(every=10, warmup=10)
    assert [e for e in range(1, 41) if is_update_epoch(e, p)] == [20, 30, 40]
    assert not is_update_epoch(10, LabelUpdateParams(enabled=False))


def _alignment_sim(seed: int, n=2000, c=20, d=64):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(c, d))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    y = rng.random((n, c)) < 0.12
    y[np.arange(n), rng.integers(c, size=n)] = True
    x = y.astype(float) @ t + 0.5 * rng.normal(size=(n, d))
    labels = np.clip(0.2 + 0.6 * y + 0.3 * rng.normal(size=(n, c)), 0, 1)
    return x.astype(np.float32), labels.astype(np.float32), y


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_alignment_first_update_improves_label_map(seed):
    x, labels, y = _alignment_sim(seed)
    params = LinearParams(epochs=10, batch_size=100, lr=0.5, optimizer="sgd", seed=seed)
    res = train_linear(x, labels, None, params, LabelUpdateParams(every=10), gt=y, progress=False)
    before = mean_average_precision(y, np.clip(labels, EPS, 1 - EPS))[0]
    after = mean_average_precision(y, res.labels)[0]
    assert after >= before + 4, (before, after)
    h = res.history
    assert (
        h["n_updates"].iloc[-1] == 1 and np.isnan(h["mean_abs_dy"].iloc[0]) and h["mean_abs_dy"].iloc[-1] > 0
    )
    assert abs(h["gt_label_map"].iloc[-1] - after) < 1e-9


def test_max_updates_and_min_label_change_stop_updates():
    x, labels, y = _alignment_sim(3, n=400)
    base = dict(epochs=6, batch_size=100, lr=0.5, optimizer="sgd")
    res = train_linear(
        x, labels, None, LinearParams(**base), LabelUpdateParams(every=1, max_updates=2), progress=False
    )
    assert res.history["n_updates"].tolist() == [1, 2, 2, 2, 2, 2]
    res = train_linear(
        x,
        labels,
        None,
        LinearParams(**base),
        LabelUpdateParams(every=1, min_label_change=1.0),
        progress=False,
    )
    assert res.history["n_updates"].tolist() == [1] * 6
    frozen = train_linear(
        x, labels, None, LinearParams(**base), LabelUpdateParams(enabled=False), progress=False
    )
    np.testing.assert_array_equal(frozen.labels, np.clip(labels, EPS, 1 - EPS))


def test_classifier_initialisation_predicts_about_ten_percent_positive():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 32)).astype(np.float32)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    x = rng.normal(size=(500, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    res = train_linear(
        x, np.full((500, 8), 0.5, np.float32), w, LinearParams(epochs=1, lr=1e-12), progress=False
    )
    frac = (predict_linear(res.head, x) >= 0.5).mean()
    assert 0.08 <= frac <= 0.12


def test_kl_softmax_loss_matches_definition():
    rng = np.random.default_rng(4)
    logits = torch.tensor(rng.normal(size=(3, 5)))
    y = torch.tensor(rng.uniform(0.1, 0.9, size=(3, 5)))
    loss, p = network_loss(logits, y, "kl_softmax")
    pn, yn = torch.softmax(logits, -1).numpy(), (y / y.sum(-1, keepdim=True)).numpy()
    assert abs(float(loss) - float(np.mean(np.sum(pn * np.log(pn / yn), axis=1)))) < 1e-10
    np.testing.assert_allclose(p.numpy(), pn)
    x, labels, yy = _alignment_sim(5, n=300)
    res = train_linear(
        x, labels, None, LinearParams(epochs=2, batch_size=100, net_loss="kl_softmax"),
        LabelUpdateParams(every=1, loss="categorical_kl"), progress=False,
    )  # fmt: skip
    assert np.isfinite(res.labels).all() and res.history["n_updates"].iloc[-1] == 2


def test_linear_learner_trains_with_asl():
    """``net_loss: asl`` runs, differs from ``bce``, and its settings reach the loss: with γ± = 0 and
    no margin ASL is the summed BCE, so the run matches ``bce``."""
    x, labels, _ = _alignment_sim(7, n=300)
    upd = LabelUpdateParams(every=1)
    base = dict(epochs=3, batch_size=100, lr=1e-2)
    bce = train_linear(x, labels, None, LinearParams(**base), upd, progress=False)
    asl = train_linear(x, labels, None, LinearParams(**base, net_loss="asl"), upd, progress=False)
    assert np.isfinite(asl.labels).all() and asl.history["n_updates"].iloc[-1] == 3
    assert np.isfinite(asl.history["loss_net"]).all()
    assert np.abs(asl.labels - bce.labels).max() > 1e-3
    assert not np.allclose(asl.history["loss_net"], bce.history["loss_net"])
    plain = {"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.0}  # a config mapping, converted
    same = train_linear(x, labels, None, LinearParams(**base, net_loss="asl", asl=plain), upd, progress=False)
    assert LinearParams(asl=plain).asl == AslParams(**plain)
    np.testing.assert_allclose(same.labels, bce.labels, atol=1e-4)
    np.testing.assert_allclose(same.history["loss_net"], bce.history["loss_net"], rtol=1e-4)
    with pytest.raises(ValueError, match="net_loss"):
        LinearParams(net_loss="focal")


def test_resume_after_a_kill_gives_identical_results(tmp_path, monkeypatch):
    import s3a.multilabel.cdul.linear as linear

    x, labels, _ = _alignment_sim(6, n=300)
    params = LinearParams(epochs=6, batch_size=64, lr=1e-2)
    upd = LabelUpdateParams(every=2)
    whole = train_linear(x, labels, None, params, upd, progress=False)
    state = str(tmp_path / "state.pt")
    real_save = linear.save_state

    def save_then_die(path, st):
        real_save(path, st)
        if st["epoch"] == 4:  # killed right after an update epoch
            raise KeyboardInterrupt

    monkeypatch.setattr(linear, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_linear(x, labels, None, params, upd, progress=False, state_path=state)
    monkeypatch.setattr(linear, "save_state", real_save)
    resumed = train_linear(x, labels, None, params, upd, progress=False, state_path=state)
    np.testing.assert_array_equal(resumed.labels, whole.labels)
    for a, b in zip(resumed.head.state_dict().values(), whole.head.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.history["epoch"].tolist() == list(range(1, 7))
    # other settings: the stale state is ignored, a fresh run starts
    other = train_linear(
        x, labels, None, LinearParams(epochs=2, batch_size=64, lr=1e-2), upd, progress=False, state_path=state
    )
    assert other.history["epoch"].tolist() == [1, 2]
