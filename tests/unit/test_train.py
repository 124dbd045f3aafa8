"""Self-training: the pieces by hand, a learnable task, resume after a kill, and 2-process DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from s3a.data import build_manifest
from s3a.embed import text_classifier
from s3a.io import write_embeddings, write_table
from s3a.models import TINY_ARCH, ModelSpec, load_clip
from s3a.train.loop import TrainParams, TrainPaths, train
from s3a.train.optim import cosine_lr, ema_decay, ema_update, layer_id, param_groups, s3a_loss
from s3a.train.preempt import EXIT_PREEMPTED, SignalFlag
from s3a.vocab import build_vocabulary


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_checkpoint):
    """Generated shapes, a 40-name vocabulary holding their names, its classifier, perfect labels."""
    root = tmp_path_factory.mktemp("train")
    manifest = build_manifest(
        "generated", {"root": str(root / "shapes"), "images_per_class": 16, "image_size": 64}
    )
    full = build_vocabulary()
    names = sorted(set(manifest.class_name)) + [n for n in full.name[:: len(full) // 40]][: 40 - 6]
    vocabulary = full[full.name.isin(names)].reset_index(drop=True)
    vocabulary["vocab_index"] = np.arange(len(vocabulary))
    write_table(manifest, root / "manifest.parquet")
    write_table(vocabulary, root / "vocabulary.parquet")
    clip = load_clip(ModelSpec(TINY_ARCH, str(tiny_checkpoint)), device="cpu")
    weights = text_classifier(clip.model, clip.tokenizer, list(vocabulary.name), ["a photo of a {}."])
    write_embeddings(
        vocabulary.vocab_index.to_numpy(), weights, root / "classifier.parquet", id_column="vocab_index"
    )
    train_rows = manifest[manifest.split == "train"]
    index = dict(zip(vocabulary.name, vocabulary.vocab_index, strict=True))
    labels = pd.DataFrame(
        {
            "image_id": train_rows.image_id,
            "vocab_index": train_rows.class_name.map(index),
            "cluster": train_rows.class_index,
        }
    )
    write_table(labels, root / "structural_labels.parquet")
    return root, ModelSpec(TINY_ARCH, str(tiny_checkpoint))


def paths_for(root: Path, run: str) -> TrainPaths:
    return TrainPaths(
        manifest=str(root / "manifest.parquet"),
        vocabulary=str(root / "vocabulary.parquet"),
        classifier=str(root / "classifier.parquet"),
        structural_labels=str(root / "structural_labels.parquet"),
        student=str(root / run / "out" / "student.pt"),
        teacher=str(root / run / "out" / "teacher.pt"),
        history=str(root / run / "out" / "history.parquet"),
        test_epochs=str(root / run / "out" / "test_epochs.parquet"),
        state=str(root / run / "state.pt"),
    )


def cli_args(paths: TrainPaths, spec: ModelSpec, params: dict) -> list[str]:
    return [
        "--manifest", paths.manifest, "--vocabulary", paths.vocabulary, "--classifier", paths.classifier,
        "--structural-labels", paths.structural_labels, "--student", paths.student,
        "--teacher", paths.teacher, "--history", paths.history, "--test-epochs", paths.test_epochs,
        "--state", paths.state,
        "--model", json.dumps({"arch": spec.arch, "pretrained": spec.pretrained}),
        "--params", json.dumps(params), "--device", "cpu",
    ]  # fmt: skip


FAST = {"batch_size": 16, "num_workers": 0, "warmup_epochs": 1, "extract_batch_size": 64}


def test_layer_ids_and_groups(tiny_clip):
    assert layer_id("conv1.weight", 12) == 0
    assert layer_id("positional_embedding", 12) == 0
    assert layer_id("transformer.resblocks.3.mlp.c_fc.weight", 12) == 4
    assert layer_id("proj", 12) == 13 and layer_id("ln_post.bias", 12) == 13
    groups = param_groups(tiny_clip.model.visual, TrainParams(layer_decay=0.5, weight_decay=0.1))
    scales = {g["lr_scale"] for g in groups}
    assert scales == {0.5**3, 0.5**2, 0.5**1, 1.0}  # 2 blocks: layers 0..3
    assert all(g["weight_decay"] == (0.0 if all(p.ndim <= 1 for p in g["params"]) else 0.1) for g in groups)
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == sum(p.numel() for p in tiny_clip.model.visual.parameters())


def test_schedules():
    assert cosine_lr(0, 11, 1.0, 0.1) == pytest.approx(1.0)
    assert cosine_lr(10, 11, 1.0, 0.1) == pytest.approx(0.1)
    assert cosine_lr(5, 11, 1.0, 0.1) == pytest.approx(0.55)
    params = TrainParams(ema_decay_init=0.99, ema_decay=0.999, ema_warmup_iters=100)
    assert ema_decay(0, params) == pytest.approx(0.99)
    assert ema_decay(50, params) == pytest.approx(0.9945)
    assert ema_decay(1000, params) == pytest.approx(0.999)


def test_ema_update_by_hand():
    teacher, student = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        teacher.weight.fill_(1.0)
        student.weight.fill_(3.0)
    ema_update(teacher, student, 0.75)
    torch.testing.assert_close(teacher.weight, torch.full((1, 2), 1.5))


def test_loss_by_hand():
    teacher = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.1, 0.0]])  # confident on 0 / unsure
    student = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    structural = torch.tensor([1, 2])
    loss, parts = s3a_loss(
        teacher, student, structural, TrainParams(conf_threshold=0.5, w_ins=1.0, w_str=0.25)
    )
    ce = torch.nn.functional.cross_entropy
    ins = ce(student[:1], torch.tensor([0]))
    struct = ce(student, structural)
    assert parts["confident"] == 1
    assert float(loss) == pytest.approx(float(ins + 0.25 * struct), rel=1e-6)
    _, parts = s3a_loss(teacher, student, structural, TrainParams(conf_threshold=0.99999))
    assert parts["loss_ins"] == 0.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lr", -1e-5, "lr"),
        ("epochs", 0, "epochs"),
        ("online_start", "never", "online_start"),
        ("conf_threshold", 2, "conf"),
    ],
)
def test_bad_params_fail_early(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainParams(**{field: value})


@pytest.mark.slow
def test_missing_structural_labels_fail_before_any_model(world, tmp_path):
    root, spec = world
    paths = paths_for(root, "missing")
    paths = TrainPaths(**{**paths.__dict__, "structural_labels": str(tmp_path / "none.parquet")})
    result = subprocess.run(
        [sys.executable, "-m", "s3a.train", *cli_args(paths, spec, FAST)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "structural_labels not found" in result.stderr
    assert "loaded s3a-tiny" not in result.stderr


@pytest.mark.slow
def test_loss_falls_on_a_learnable_task(world):
    root, spec = world
    params = TrainParams(epochs=4, lr=3e-2, min_lr=3e-3, w_ins=0.0, w_str=1.0, warmup_epochs=10, **{
        k: v for k, v in FAST.items() if k != "warmup_epochs"})  # fmt: skip
    history = train(paths_for(root, "learn"), params, spec, device="cpu")
    assert list(history.epoch) == [0, 1, 2, 3]
    assert history.loss_str.iloc[-1] < 0.8 * history.loss_str.iloc[0]
    assert (Path(root) / "learn" / "out" / "student.pt").is_file()
    expected = {
        "loss",
        "loss_ins",
        "loss_str",
        "lr",
        "confident_fraction",
        "structural_top1",
        "teacher_top1_train",
    }
    assert set(pd.read_parquet(root / "learn" / "out" / "history.parquet").columns) >= expected


def signal_after_first_epoch(command: list[str], paths: TrainPaths, sig: signal.Signals) -> int:
    """Start ``command``, send ``sig`` once its state says an epoch is done, return its exit status."""
    proc = subprocess.Popen(command)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if Path(paths.state).exists() and torch.load(paths.state, weights_only=False)["epoch"] >= 1:
            proc.send_signal(sig)
            break
        time.sleep(0.02)
    return proc.wait(timeout=120)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(world):
    root, spec = world
    params = {**FAST, "epochs": 4, "lr": 1e-3, "min_lr": 1e-4}
    reference = paths_for(root, "whole")
    subprocess.run(
        [sys.executable, "-m", "s3a.train", *cli_args(reference, spec, params)], check=True, timeout=300
    )

    killed = paths_for(root, "killed")
    command = [sys.executable, "-m", "s3a.train", *cli_args(killed, spec, params)]
    # a node failure: no chance to clean up
    assert signal_after_first_epoch(command, killed, signal.SIGKILL) == -signal.SIGKILL
    done = torch.load(killed.state, weights_only=False)["epoch"]
    assert 1 <= done < 4
    assert not Path(killed.history).exists()
    subprocess.run(
        [sys.executable, "-m", "s3a.train", *cli_args(killed, spec, params)], check=True, timeout=300
    )

    for name in ("student", "teacher"):
        a = torch.load(getattr(reference, name))
        b = torch.load(getattr(killed, name))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(
        pd.read_parquet(reference.history),
        pd.read_parquet(killed.history),
        rtol=1e-5,
    )


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_the_step_and_the_rerun_ends_bit_identical(world):
    """Slurm's time limit or scancel: SIGTERM in the middle of an epoch costs at most one step."""
    root, spec = world
    params = {**FAST, "epochs": 3, "lr": 1e-3, "min_lr": 1e-4}
    reference = paths_for(root, "sigterm-whole")
    subprocess.run(
        [sys.executable, "-m", "s3a.train", *cli_args(reference, spec, params)], check=True, timeout=300
    )
    stopped = paths_for(root, "sigterm")
    log = Path(stopped.state).with_name("train.log")
    command = [sys.executable, "-m", "s3a.train", *cli_args(stopped, spec, params), "--log", str(log)]
    assert signal_after_first_epoch(command, stopped, signal.SIGTERM) == EXIT_PREEMPTED
    state = torch.load(stopped.state, weights_only=False)
    assert state["epoch"] == 1 and 1 <= state["step_in_epoch"] <= 4, (state["epoch"], state["step_in_epoch"])
    assert state["step"] == 4 + state["step_in_epoch"]  # 4 steps per epoch: nothing after the signal
    where = {"signal": "SIGTERM", "epoch": 1, "step_in_epoch": state["step_in_epoch"], "step": state["step"]}
    assert state["interruptions"] == [where]
    assert "SIGTERM received: saved the state after step" in log.read_text()
    subprocess.run(
        [sys.executable, "-m", "s3a.train", *cli_args(stopped, spec, params)], check=True, timeout=300
    )
    for name in ("student", "teacher"):
        a, b = torch.load(getattr(reference, name)), torch.load(getattr(stopped, name))
        assert all(torch.equal(a[key], b[key]) for key in a), name  # bit-identical
    assert torch.load(stopped.state, weights_only=False)["interruptions"] == [where]  # kept to the end
    pd.testing.assert_frame_equal(pd.read_parquet(reference.history), pd.read_parquet(stopped.history))


def signal_after_step(monkeypatch, n: int):
    """Make the ``n``-th training step of this process send it SIGTERM; return the real step function."""
    import s3a.train.step as step_module

    real, calls = step_module.train_step, []

    def step_then_signal(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(step_module, "train_step", step_then_signal)
    return real


@pytest.mark.slow
def test_a_signal_in_the_last_step_of_an_epoch_resumes_to_the_same_history(world, monkeypatch):
    """The signal arrives during an epoch's last step: the state holds a finished epoch's training
    (its evaluation and history row still to do), and the resumed run writes that row as it was."""
    import s3a.train.step as step_module
    from s3a.train.preempt import Preempted

    root, spec = world
    params = TrainParams(**{**FAST, "epochs": 3, "lr": 1e-3, "min_lr": 1e-4})
    reference = paths_for(root, "last-step-whole")
    train(reference, params, spec, device="cpu")
    real = signal_after_step(monkeypatch, 8)  # the 4th and last step of epoch 1
    stopped = paths_for(root, "last-step")
    with pytest.raises(Preempted, match="after step 4 of epoch 1"):
        train(stopped, params, spec, device="cpu")
    state = torch.load(stopped.state, weights_only=False)
    assert (state["epoch"], state["step_in_epoch"], state["step"]) == (1, 4, 8)
    monkeypatch.setattr(step_module, "train_step", real)
    train(stopped, params, spec, device="cpu")
    pd.testing.assert_frame_equal(pd.read_parquet(reference.history), pd.read_parquet(stopped.history))
    a, b = torch.load(reference.student), torch.load(stopped.student)
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.slow
def test_views_made_on_the_device_train_and_resume_mid_epoch_to_identical_weights(world, monkeypatch):
    """augment: gpu (here on the CPU device): workers read the files and draw the parameters, the
    batch is decoded and augmented in the training process, ahead of the step in a background
    thread; a run stopped in the middle of an epoch resumes to the weights of an uninterrupted one,
    bit for bit (the draws are seeded per sample)."""
    import s3a.train.gpu_views as gpu_views
    import s3a.train.loop as loop_module
    import s3a.train.step as step_module
    from s3a.train.preempt import Preempted

    root, spec = world
    params = TrainParams(
        **{**FAST, "epochs": 2, "lr": 1e-3, "min_lr": 1e-4, "augment": "gpu", "num_workers": 2}
    )
    made = []
    real_views = gpu_views.DeviceViews.__call__

    def counting(self, images, draws):
        made.append(len(draws))
        return real_views(self, images, draws)

    monkeypatch.setattr(gpu_views.DeviceViews, "__call__", counting)
    threads = []
    real_ahead = loop_module.ahead

    def noting(items, device, depth=2):
        threads.append(depth)
        return real_ahead(items, device, depth)

    monkeypatch.setattr(loop_module, "ahead", noting)
    reference = paths_for(root, "gpu-views-whole")
    history = train(reference, params, spec, device="cpu")
    assert made == [16] * 8 and list(history.epoch) == [0, 1]  # 2 epochs of 4 batches, made here
    assert threads == [2, 2]  # each epoch's views made two batches ahead
    real = signal_after_step(monkeypatch, 6)  # step 2 of epoch 1
    stopped = paths_for(root, "gpu-views-stopped")
    with pytest.raises(Preempted, match="after step 2 of epoch 1"):
        train(stopped, params, spec, device="cpu")
    monkeypatch.setattr(step_module, "train_step", real)
    train(stopped, params, spec, device="cpu")
    pd.testing.assert_frame_equal(pd.read_parquet(reference.history), pd.read_parquet(stopped.history))
    for name in ("student", "teacher"):
        a, b = torch.load(getattr(reference, name)), torch.load(getattr(stopped, name))
        assert all(torch.equal(a[key], b[key]) for key in a), name


def test_signal_flag_catches_the_configured_signals_only_while_installed():
    flag = SignalFlag(["SIGUSR1"])
    before = signal.getsignal(signal.SIGUSR1)
    with flag.installed():
        assert flag.received is None and not flag.agreed(lambda v: v)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        assert flag.received == "SIGUSR1" and flag.agreed(lambda v: v)
    assert signal.getsignal(signal.SIGUSR1) == before
    with pytest.raises(ValueError, match="unknown signal"):
        SignalFlag(["SIGNOPE"])


def test_sample_augmentation_is_seeded_by_sample_not_by_order(world):
    """The views of an image depend on (seed, epoch, index) only: what a resumed epoch relies on."""
    from s3a.io import read_table
    from s3a.train.augment import TwoViews, training_views

    root, _ = world
    paths = list(read_table(root / "manifest.parquet").path[:3])
    views = training_views({"size": 32, "mean": (0.5,) * 3, "std": (0.5,) * 3})
    data = TwoViews(paths, *views, seed=7)
    data.set_epoch(2)
    forward = [data[i] for i in range(3)]
    backward = [data[i] for i in (2, 1, 0)][::-1]
    for (w1, s1, _), (w2, s2, _) in zip(forward, backward, strict=True):
        assert torch.equal(w1, w2) and torch.equal(s1, s2)
    data.set_epoch(3)
    assert not torch.equal(data[0][1], forward[0][1])  # another epoch draws another view
    state = torch.get_rng_state()
    data[1]
    assert torch.equal(torch.get_rng_state(), state)  # the main process's generator is left as it was


@pytest.mark.slow
def test_two_process_gloo_agrees_with_one_process(world):
    root, spec = world
    # lr 0: the weights stay put, so the online pseudo-labels of both runs must be identical
    params = {**FAST, "epochs": 3, "lr": 0.0, "min_lr": 0.0, "num_workers": 1}
    histories = {}
    for nproc in (1, 2):
        paths = paths_for(root, f"ddp{nproc}")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   "-m", "s3a.train", *cli_args(paths, spec, params)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        histories[nproc] = pd.read_parquet(paths.history)
    columns = [
        "epoch",
        "samples",
        "structural_names",
        "structural_changed",
        "structural_top1",
        "teacher_top1_train",
    ]
    pd.testing.assert_frame_equal(histories[1][columns], histories[2][columns])
    assert (histories[2].samples == 64).all()  # 4 steps x global batch 16
    assert not math.isnan(histories[2].loss.iloc[0])


def test_strong_view_survives_every_randaugment_level():
    """The top RandAugment level posterizes to 0 bits; current Pillow rejects that unless handled."""
    from PIL import Image

    from s3a.train.augment import _posterize_keeping_zero_bits, training_views

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 90, 3), dtype=np.uint8))
    assert np.asarray(_posterize_keeping_zero_bits(img, 0)).max() == 0
    assert np.array_equal(np.asarray(_posterize_keeping_zero_bits(img, 8)), np.asarray(img))
    weak, strong = training_views({"size": 64, "mean": (0.5,) * 3, "std": (0.5,) * 3})
    from timm.data.auto_augment import AugmentOp

    top = AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10, hparams={"magnitude_std": 0})
    assert np.asarray(top(img)).max() == 0  # 0 bits kept: black, no error
    assert strong(img).shape == (3, 64, 64) and weak(img).shape == (3, 64, 64)


def test_training_views_take_the_model_preprocessing():
    """Size, mean and std come from the model's config (a non-OpenAI normalisation here)."""
    from PIL import Image

    from s3a.train.augment import training_views

    img = Image.new("RGB", (90, 70), (255, 255, 255))
    cfg = {"size": 48, "mean": (0.5, 0.25, 0.0), "std": (0.5, 0.25, 1.0), "interpolation": "bilinear"}
    weak, strong = training_views(cfg)
    for view in (weak, strong):
        out = view(img)
        assert out.shape == (3, 48, 48)
    expected = torch.tensor([1.0, 3.0, 1.0])  # (1 - mean) / std of a white image
    torch.testing.assert_close(weak(img).mean(dim=(1, 2)), expected)


@pytest.mark.slow
def test_training_uses_the_model_preprocessing(world, monkeypatch):
    """The training loop builds its views from the loaded model's preprocessing config."""
    import s3a.train.loop as loop

    seen = []
    real = loop.training_views

    def spy(cfg):
        seen.append(dict(cfg))
        return real(cfg)

    monkeypatch.setattr(loop, "training_views", spy)
    root, spec = world
    params = TrainParams(epochs=1, **{**FAST, "warmup_epochs": 5})
    train(paths_for(root, "views"), params, spec, device="cpu")
    clip = load_clip(spec, device="cpu")
    assert seen == [clip.preprocess_cfg]


def test_head_logits_are_fp32_under_bf16_autocast(tiny_clip):
    """The encoder may run in bf16; the logits over the names equal the fp32 head on its features."""
    from s3a.train.step import head_logits

    visual = tiny_clip.model.visual
    images = torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    classifier = torch.nn.functional.normalize(
        torch.randn(500, 32, generator=torch.Generator().manual_seed(1))
    )
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        features = visual(images)
        logits = head_logits(visual, images, classifier)
    assert features.dtype == torch.bfloat16  # the encoder really ran in bf16
    assert logits.dtype == torch.float32
    reference = 100 * torch.nn.functional.normalize(features.float(), dim=-1) @ classifier.T
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=0)
    # and without autocast the head is the plain fp32 computation
    with torch.no_grad():
        plain = head_logits(visual, images, classifier)
        expected = 100 * torch.nn.functional.normalize(visual(images), dim=-1) @ classifier.T
    torch.testing.assert_close(plain, expected, atol=1e-5, rtol=0)


def _step_dtypes(tiny_clip, precision: str) -> tuple[set, list]:
    """One train_step of a copy of the tiny encoder with ``precision``: the dtypes the encoders' first
    MLP layer produced (student and teacher) and the dtypes of the logits the loss received."""
    import copy

    import s3a.train.step as loop
    from s3a.train.step import train_step

    student = copy.deepcopy(tiny_clip.model.visual).float()
    teacher = copy.deepcopy(student).requires_grad_(False)
    produced = set()
    for module in (student, teacher):
        module.transformer.resblocks[0].mlp.c_fc.register_forward_hook(
            lambda mod, args, out: produced.add(out.dtype)
        )
    logits = []
    real = loop.s3a_loss

    def spy(teacher_logits, student_logits, structural, params):
        logits.append((teacher_logits.dtype, student_logits.dtype))
        return real(teacher_logits, student_logits, structural, params)

    loop.s3a_loss = spy
    try:
        params = TrainParams(precision=precision)
        optimizer = torch.optim.AdamW(param_groups(student, params), lr=1e-5)
        classifier = torch.nn.functional.normalize(torch.randn(50, 32))
        batch = (torch.randn(4, 3, 64, 64), torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3]))
        before = student.conv1.weight.detach().clone()
        loss, _ = train_step(
            student, teacher, optimizer, batch, classifier, params, 0, 1e-3, torch.device("cpu")
        )
    finally:
        loop.s3a_loss = real
    assert math.isfinite(loss) and not torch.equal(before, student.conv1.weight)  # it trained
    assert all(p.dtype == torch.float32 for p in student.parameters())
    return produced, logits


def test_train_step_precision_bf16_autocasts_the_encoder_and_fp32_does_not(tiny_clip, monkeypatch):
    """bf16 (default): the encoders run in bf16 where autocast is on (CUDA; here the CPU stands in);
    fp32: no autocast at all, even where bf16 would be on. The head is fp32 either way."""
    import s3a.train.step as loop

    assert TrainParams().precision == "bf16"
    # today's CPU behaviour, both settings: fp32 (bf16 autocast is only for CUDA)
    for precision in ("bf16", "fp32"):
        assert _step_dtypes(tiny_clip, precision) == ({torch.float32}, [(torch.float32, torch.float32)])
    monkeypatch.setattr(loop, "BF16_DEVICES", ("cuda", "cpu"))  # this CPU as the CUDA device
    produced, logits = _step_dtypes(tiny_clip, "bf16")
    assert produced == {torch.bfloat16} and logits == [(torch.float32, torch.float32)]
    produced, logits = _step_dtypes(tiny_clip, "fp32")
    assert produced == {torch.float32} and logits == [(torch.float32, torch.float32)]
    # fp32 switches autocast off even inside a caller's autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _step_dtypes(tiny_clip, "fp32")[0] == {torch.float32}


def test_teacher_features_follow_the_precision(tiny_clip, world, monkeypatch):
    import s3a.train.loop as loop
    import s3a.train.step as step
    from s3a.train.distributed import DistEnv

    monkeypatch.setattr(step, "BF16_DEVICES", ("cuda", "cpu"))
    paths = list(pd.read_parquet(world[0] / "manifest.parquet").path[:4])
    produced = []
    hook = tiny_clip.model.visual.transformer.resblocks[0].mlp.c_fc.register_forward_hook(
        lambda mod, args, out: produced.append(out.dtype)
    )
    try:
        for precision in ("bf16", "fp32"):
            params = TrainParams(precision=precision, num_workers=0, extract_batch_size=4)
            loop.extract_features(tiny_clip.model.visual, paths, tiny_clip.preprocess, params, DistEnv())
    finally:
        hook.remove()  # the model is shared by other tests
    assert produced == [torch.bfloat16, torch.float32]


def test_resume_fingerprint_includes_the_precision(world):
    from s3a.train.state import run_fingerprint

    root, spec = world
    paths = paths_for(root, "fingerprint")
    bf16, fp32 = (run_fingerprint(paths, TrainParams(precision=p), spec, 1) for p in ("bf16", "fp32"))
    assert bf16 != fp32
    assert bf16 == run_fingerprint(paths, TrainParams(), spec, 1)
    with pytest.raises(ValueError, match="precision"):
        TrainParams(precision="fp16")


MEMORY_PROBE = """
import json, resource, sys
import numpy as np, torch
from s3a.train.loop import vocabulary_top1

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

n, v, d = 100_000, 20_071, 32
rng = np.random.default_rng(0)
features = rng.standard_normal((n, d), dtype=np.float32)
features /= np.linalg.norm(features, axis=1, keepdims=True)
classifier = rng.standard_normal((v, d), dtype=np.float32)
classifier /= np.linalg.norm(classifier, axis=1, keepdims=True)
vocabulary_top1(features[:10], classifier, torch.device("cpu"))  # load kernels before measuring
before = rss_kb()
top1 = vocabulary_top1(features, classifier, torch.device("cpu"))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
dense = (features[:2000] @ classifier.T).argmax(1)
print(json.dumps({"delta_mb": (peak - before) / 1024, "n": len(top1),
                  "agree": float(np.mean(top1[:2000] == dense))}))
"""


@pytest.mark.slow
def test_online_top1_memory_is_bounded_whatever_n():
    """N = 100k images x 20,071 names: a dense logits matrix would add 8 GB; the chunked top-1 < 3 GB."""
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["n"] == 100_000 and probe["agree"] == 1.0
    assert probe["delta_mb"] < 3 * 1024, probe


@pytest.mark.slow
def test_online_vote_uses_the_chunked_top1(world, monkeypatch):
    """The training loop's top-1 goes through the chunked zero-shot, never a dense N x V product."""
    import s3a.train.loop as loop

    calls = []
    real = loop.zero_shot

    def spy(features, classifier, *args, **kwargs):
        calls.append((len(features), len(classifier)))
        return real(features, classifier, *args, **kwargs)

    monkeypatch.setattr(loop, "zero_shot", spy)
    root, spec = world
    params = TrainParams(epochs=2, **{**FAST, "warmup_epochs": 1})
    history = train(paths_for(root, "chunked"), params, spec, device="cpu")
    n_train = len(pd.read_parquet(root / "structural_labels.parquet"))
    assert (n_train, 40) in calls
    assert history.teacher_top1_train.notna().all()


@pytest.mark.parametrize("decoder", ["pil", "fast", "gpu"])
def test_teacher_features_use_the_configured_decoder(tiny_clip, world, monkeypatch, decoder):
    """extract_features reads images with params.decoder, exactly as encode_images does."""
    import s3a.train.loop as loop
    from s3a.embed import EmbedParams, encode_images
    from s3a.train.distributed import DistEnv

    root, _ = world
    manifest = pd.read_parquet(root / "manifest.parquet")
    paths = list(manifest.path[:12])
    used = []
    real = loop.image_batches

    def spy(paths_, transform, read, *args, **kwargs):
        used.append(read.decoder)
        return real(paths_, transform, read, *args, **kwargs)

    monkeypatch.setattr(loop, "image_batches", spy)
    params = TrainParams(decoder=decoder, num_workers=0, extract_batch_size=5)
    features = loop.extract_features(tiny_clip.model.visual, paths, tiny_clip.preprocess, params, DistEnv())
    assert used == [decoder]
    offline = encode_images(
        tiny_clip.model,
        tiny_clip.preprocess,
        paths,
        EmbedParams(batch_size=5, num_workers=0, decoder=decoder),
    )
    np.testing.assert_allclose(features, offline.embeddings, atol=1e-5)


def test_unknown_decoder_fails_early():
    with pytest.raises(ValueError, match="decoder"):
        TrainParams(decoder="nvjpeg-maybe")


@pytest.mark.slow
def test_student_and_teacher_are_evaluated_on_test_every_eval_every_epochs(world, tiny_clip):
    """history carries the per-epoch test metrics; test_epochs.parquet the predictions behind them;
    the last evaluated epoch is exactly what the saved student predicts."""
    from s3a.embed import EmbedParams, encode_images, zero_shot
    from s3a.io import read_embeddings
    from s3a.metrics import cluster_accuracy, gt_vocab_index, named_classes, top1_accuracy

    root, spec = world
    params = TrainParams(epochs=3, eval_every=2, lr=1e-3, min_lr=1e-4, **FAST)
    paths = paths_for(root, "evaluated")
    history = train(paths, params, spec, device="cpu")
    assert history.student_test_top1.isna().tolist() == [True, False, False]  # epochs 1 and 2 (last)
    assert history.teacher_test_cluster_acc.isna().tolist() == [True, False, False]
    epochs = pd.read_parquet(paths.test_epochs)
    manifest = pd.read_parquet(root / "manifest.parquet")
    test = manifest[manifest.split == "test"].set_index("image_id")
    assert sorted(epochs.epoch.unique()) == [1, 2]
    assert (epochs.groupby("epoch").size() == len(test)).all()
    vocabulary = pd.read_parquet(root / "vocabulary.parquet")
    for epoch, group in epochs.groupby("epoch"):
        rows = test.loc[group.image_id]
        gt = gt_vocab_index(list(rows.wnid), list(rows.class_name), vocabulary)
        row = history[history.epoch == epoch].iloc[0]
        for role in ("student", "teacher"):
            pred = group[f"{role}_vocab_index"].to_numpy()
            assert row[f"{role}_test_top1"] == pytest.approx(100 * top1_accuracy(pred, gt))
            assert row[f"{role}_test_cluster_acc"] == pytest.approx(
                100 * cluster_accuracy(pred, named_classes(gt, list(rows.class_name)))
            )
    # the last epoch's student predictions = the saved student's predictions (the predict rule's path)
    clip = load_clip(spec, device="cpu")
    clip.model.visual.load_state_dict(torch.load(paths.student))
    last = epochs[epochs.epoch == 2]
    result = encode_images(
        clip.model, clip.preprocess, list(test.loc[last.image_id].path), EmbedParams(num_workers=0)
    )
    _, classifier = read_embeddings(root / "classifier.parquet", id_column="vocab_index")
    pred, _ = zero_shot(result.embeddings, classifier)
    assert np.array_equal(pred, last.student_vocab_index.to_numpy())


def test_in_loop_cluster_accuracy_counts_classes_that_share_a_name_as_one(monkeypatch):
    """ImageNet-1K's two `crane` wnids (bird, machine) have one vocabulary name: the history's cluster
    accuracy scores names, as the report does (997 classes), never a wnid no name can tell apart."""
    import s3a.train.loop as loop
    from s3a.metrics import stage_metrics
    from s3a.train.distributed import DistEnv

    vocabulary = pd.DataFrame(
        {
            "vocab_index": [0, 1, 2],
            "name": ["crane", "dog", "cat"],
            "synset_ids": [["n02012849", "n03126707"], ["n02084071"], ["n02121808"]],
        }
    )
    manifest = pd.DataFrame(
        {
            "image_id": np.arange(8),
            "path": [f"img{i}.jpg" for i in range(8)],
            "split": ["train", "train"] + ["test"] * 6,
            "class_index": [0, 2, 0, 0, 1, 1, 2, 2],
            "class_name": ["crane", "dog", "crane", "crane", "crane", "crane", "dog", "dog"],
            "wnid": ["n02012849", "n02084071", "n02012849", "n02012849", "n03126707", "n03126707"]
            + ["n02084071"] * 2,
        }
    )
    split = loop.eval_split(manifest, vocabulary)
    assert list(split.image_id) == [2, 3, 4, 5, 6, 7]
    assert len(set(split.gt_class)) == 2  # bird and machine crane are one named class
    classifier = np.eye(3, dtype=np.float32)
    predicted = np.array([0, 0, 0, 0, 1, 1])  # both cranes named `crane`, the dogs `dog`
    monkeypatch.setattr(loop, "extract_features", lambda *args, **kwargs: classifier[predicted])
    ids, pred, metrics = loop.evaluate_on_split(None, split, None, classifier, TrainParams(), DistEnv())
    assert np.array_equal(pred, predicted)
    report = stage_metrics(
        manifest, vocabulary, {"test": pd.DataFrame({"image_id": ids, "pred_vocab_index": pred})}
    )
    assert metrics["cluster_acc"] == pytest.approx(100.0) == report.cluster_acc.iloc[0]
    assert metrics["top1"] == pytest.approx(100.0) == report.top1.iloc[0]
