"""Image learners of the multi-label mode (``finetune``, ``mldecoder`` with a trainable backbone):
settings, layer decay, gradients, the command line end to end, resume after a kill, 2-process DDP,
prediction. Tiny random CLIP model on the generated multi-label set, CPU."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from s3a.io import read_embeddings, write_embeddings, write_table
from s3a.models import TINY_ARCH, ModelSpec
from s3a.multilabel.aggregate import PseudoParams, ViewScores, aggregate, scores_table
from s3a.multilabel.classifier import label_classifier
from s3a.multilabel.data.registry import build_multilabel
from s3a.multilabel.data.tables import label_matrix
from s3a.multilabel.imagetrain import loop as imageloop
from s3a.multilabel.imagetrain.__main__ import main
from s3a.multilabel.imagetrain.network import (
    ImageTrainParams,
    build_net,
    image_loss,
    net_param_groups,
    predict_finetuned,
)

FAST = {"batch_size": 8, "num_workers": 0, "lr": 1e-3, "augment": "weak", "init_scale": 20.0}
SMALL_HEAD = {"embed_dim": 16, "heads": 2, "ff_dim": 32, "dropout": 0.1, "query_chunk": 4}


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_checkpoint, tiny_clip):
    """Generated multi-label images (24 train, 8 test, 64 px), their tables, the tiny model's label
    classifier, and a CDUL pseudo table of the train split (Dirichlet view scores)."""
    root = tmp_path_factory.mktemp("mlft")
    data = build_multilabel(
        "generated_multilabel", {"root": str(root / "img"), "n_train": 24, "n_test": 8, "canvas": 64}
    )
    label_set = data.label_set.copy()
    label_set["seen"] = label_set["label_index"] < 4  # 4 seen, 2 unseen labels for gt_seen
    for name, table in (("manifest", data.manifest), ("labels", data.labels), ("label_set", label_set)):
        write_table(table, root / f"{name}.parquet")
    w = label_classifier(tiny_clip.model, tiny_clip.tokenizer, data.label_set["prompt"], "cdul")
    write_embeddings(np.arange(len(w)), w, root / "label_classifier.parquet", id_column="label_index")
    train = data.manifest[data.manifest.split == "train"]
    rng = np.random.default_rng(0)
    views = [rng.dirichlet(np.ones(len(w)), len(train)).astype(np.float32) for _ in range(4)]
    write_table(scores_table(train.image_id.to_numpy(), ViewScores(*views)), root / "pseudo.parquet")
    return root, ModelSpec(TINY_ARCH, str(tiny_checkpoint)), data


def nested(flat: dict, learner: str) -> dict:
    """A flat ImageTrainParams dict as the config's ``multilabel.train`` block (shared keys + the
    learner's block), the form ``--params`` takes."""
    flat = dict(flat)
    out = {k: flat.pop(k) for k in ("supervision", "seed", "label_update", "asl") if k in flat}
    block = dict(flat.pop("mldecoder", {}))
    if learner == "finetune":
        block = {}
    else:
        flat.pop("init_scale", None)  # the linear head's start: not a key of the decoder
    return {**out, learner: {**block, **flat}}


def cli(root: Path, spec: ModelSpec, run: str, params: dict, learner: str = "finetune") -> list[str]:
    out = root / run
    return [
        "--learner", learner, "--manifest", str(root / "manifest.parquet"),
        "--label-classifier", str(root / "label_classifier.parquet"),
        "--pseudo", str(root / "pseudo.parquet"),
        "--labels", str(root / "labels.parquet"), "--label-set", str(root / "label_set.parquet"),
        "--model", json.dumps({"arch": spec.arch, "pretrained": spec.pretrained}),
        "--params", json.dumps(nested(params, learner)), "--pseudo-params", "{}", "--device", "cpu",
        "--out-model", str(out / "model.pt"), "--out-history", str(out / "history.parquet"),
        "--out-labels", str(out / "labels_refined.parquet"), "--state", str(out / "state.pt"),
    ]  # fmt: skip


def refined(root: Path, run: str) -> np.ndarray:
    col = pq.read_table(root / run / "labels_refined.parquet").column("y").combine_chunks()
    return col.values.to_numpy().reshape(len(col), -1)


def initial_targets(root: Path) -> np.ndarray:
    from s3a.multilabel.aggregate import read_scores

    _, views, _ = read_scores(pq.read_table(root / "pseudo.parquet"))
    return aggregate(views, PseudoParams())[1]


def test_params_from_config():
    params = ImageTrainParams.from_config(
        {"learner": "mldecoder", "optimizer": "adam", "device": "cpu", "label_update": {"every": 2},
         "mldecoder": {**SMALL_HEAD, "backbone": "finetune", "backbone_lr": 3e-6}, "asl": {"gamma_neg": 2}}
    )  # fmt: skip
    assert params.trains_backbone and params.backbone_lr == 3e-6 and params.mldecoder.embed_dim == 16
    assert params.label_update.every == 2 and params.asl.gamma_neg == 2
    assert ImageTrainParams().trains_backbone and ImageTrainParams().label_update.every == 5
    assert not ImageTrainParams(learner="mldecoder").trains_backbone
    with pytest.raises(ValueError, match="unknown multilabel.train keys.*'epoch'"):
        ImageTrainParams.from_config({"epoch": 3})
    with pytest.raises(ValueError, match="mldecoder"):
        ImageTrainParams.from_config({"mldecoder": {"width": 3}})
    with pytest.raises(ValueError, match="gt_seen needs learner mldecoder"):
        ImageTrainParams(supervision="gt_seen")
    with pytest.raises(ValueError, match="backbone"):
        ImageTrainParams(backbone="partial")


@pytest.mark.parametrize("learner", ["finetune", "mldecoder"])
def test_layer_decay_groups(tiny_clip, learner):
    import copy

    params = ImageTrainParams.from_config(
        {
            "learner": learner,
            "lr": 1e-3,
            "weight_decay": 0.1,
            "mldecoder": {**SMALL_HEAD, "backbone": "finetune"},
        }
    )
    visual = copy.deepcopy(tiny_clip.model.visual)
    net = build_net(visual, np.eye(6, 32, dtype=np.float32), params)
    groups = net_param_groups(net, params)
    top = params.backbone_lr if learner == "mldecoder" else params.lr
    depth = len(visual.transformer.resblocks)  # 2 blocks: embeddings 0, blocks 1..2, ln_post/proj 3

    def base_lr(param: torch.nn.Parameter) -> float:
        (lr,) = [g["base_lr"] for g in groups if any(p is param for p in g["params"])]
        return lr

    assert base_lr(visual.proj) == pytest.approx(top)
    assert base_lr(visual.transformer.resblocks[-1].mlp.c_fc.weight) == pytest.approx(top * 0.65)
    assert base_lr(visual.transformer.resblocks[0].mlp.c_fc.weight) == pytest.approx(top * 0.65**depth)
    assert base_lr(visual.conv1.weight) == pytest.approx(top * 0.65 ** (depth + 1))
    assert all(base_lr(p) == params.lr for p in net.head.parameters())
    assert all(g["weight_decay"] == (0.0 if all(p.ndim <= 1 for p in g["params"]) else 0.1) for g in groups)
    listed = [p for g in groups for p in g["params"]]
    assert len(listed) == len({id(p) for p in listed}) == len(list(net.parameters()))


@pytest.mark.parametrize("backbone", ["finetune", "frozen"])
def test_mldecoder_gradients_reach_backbone_and_head(tiny_clip, backbone):
    import copy

    params = ImageTrainParams.from_config(
        {"learner": "mldecoder", "mldecoder": {**SMALL_HEAD, "backbone": backbone}}
    )
    net = build_net(copy.deepcopy(tiny_clip.model.visual), np.eye(6, 32, dtype=np.float32), params).train()
    torch.manual_seed(0)
    out = net(torch.randn(4, 3, 64, 64))
    assert out.logits.shape == (4, 6) and out.v.shape == (4, 16) and out.q.shape == (6, 16)
    target = (torch.rand(4, 6) > 0.5).float()
    loss, p = image_loss(out, target, params)
    loss.backward()
    assert p.shape == (4, 6) and not p.requires_grad
    head = net.head
    for param in (head.memory_proj.weight, head.query_proj.weight, head.out.weight, head.log_kappa):
        assert param.grad is not None and param.grad.abs().sum() > 0
    tower = (
        net.visual.conv1.weight,
        net.visual.transformer.resblocks[0].attn.in_proj_weight,
        net.visual.proj,
    )
    for param in tower:
        if backbone == "finetune":
            assert param.grad is not None and param.grad.abs().sum() > 0
        else:
            assert param.grad is None


@pytest.mark.slow
def test_finetune_cli_writes_outputs_and_updates_labels_at_update_epochs(world):
    root, spec, data = world
    params = {**FAST, "epochs": 3, "label_update": {"every": 2}}
    assert main(cli(root, spec, "ft", params)) == 0
    history = pd.read_parquet(root / "ft" / "history.parquet")
    assert history.epoch.tolist() == [1, 2, 3] and history.n_updates.tolist() == [0, 1, 1]
    assert (
        np.isnan(history.mean_abs_dy[0]) and history.mean_abs_dy[1] > 0 and np.isnan(history.mean_abs_dy[2])
    )
    assert np.isfinite(history.gt_label_map[[0, 1]]).all() and np.isfinite(history.loss_net).all()
    ids = pq.read_table(root / "ft" / "labels_refined.parquet").column("image_id").to_numpy()
    start = np.clip(initial_targets(root), 1e-4, 1 - 1e-4)
    y = refined(root, "ft")
    assert y.shape == start.shape == (24, 6) and ids.tolist() == sorted(ids.tolist())
    assert np.abs(y - start).max() > 1e-3 and (y >= 1e-4).all() and (y <= 1 - 1e-4).all()

    # no update epoch -> the labels stay the initial ones; the model still predicts
    assert main(cli(root, spec, "ft_fixed", {**params, "epochs": 1})) == 0
    np.testing.assert_allclose(refined(root, "ft_fixed"), start, rtol=0, atol=1e-7)
    test = data.manifest[data.manifest.split == "test"]
    paths = [*test.path, str(root / "missing.jpg")]
    scores = predict_finetuned(
        root / "ft" / "model.pt", paths, spec, batch_size=4, device="cpu", num_workers=0
    )
    assert scores.shape == (9, 6) and np.isnan(scores[-1]).all()
    assert ((scores[:-1] > 0) & (scores[:-1] < 1)).all()


@pytest.mark.slow
def test_killed_run_resumes_to_identical_labels_and_weights(world, monkeypatch, caplog):
    root, spec, _ = world
    params = {**FAST, "epochs": 4, "label_update": {"every": 2}}
    assert main(cli(root, spec, "whole", params)) == 0

    real_save = imageloop.AlignState.save

    def save_then_die(self, path):
        real_save(self, path)
        if self.epoch == 2:  # right after the first update epoch
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(imageloop.AlignState, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        main(cli(root, spec, "killed", params))
    state = torch.load(root / "killed" / "state.pt", weights_only=False)
    assert state["epoch"] == 2 and state["n_updates"] == 1  # the latent labels of the update epoch
    assert np.abs(state["labels"] - np.clip(initial_targets(root), 1e-4, 1 - 1e-4)).max() > 1e-3
    assert not (root / "killed" / "model.pt").exists()
    monkeypatch.setattr(imageloop.AlignState, "save", real_save)
    with caplog.at_level(logging.INFO, logger="s3a.multilabel.imagetrain.loop"):
        assert main(cli(root, spec, "killed", params)) == 0
    assert "resuming the finetune learner after epoch 2" in caplog.text

    np.testing.assert_array_equal(refined(root, "whole"), refined(root, "killed"))
    a, b = (torch.load(root / run / "model.pt", weights_only=False) for run in ("whole", "killed"))
    for part in ("visual", "head"):
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], rtol=0, atol=0)
    pd.testing.assert_frame_equal(
        pd.read_parquet(root / "whole" / "history.parquet"),
        pd.read_parquet(root / "killed" / "history.parquet"),
    )


@pytest.mark.slow
def test_a_signal_mid_epoch_saves_the_step_and_the_rerun_ends_identical(world, monkeypatch):
    """SIGTERM (Slurm's time limit) in the middle of an update epoch: exit 75, resume from that step."""
    import os
    import signal

    from s3a.train.preempt import EXIT_PREEMPTED

    root, spec, _ = world
    params = {**FAST, "epochs": 3, "label_update": {"every": 2}}
    assert main(cli(root, spec, "sig-whole", params)) == 0
    real_loss, calls = imageloop.image_loss, []

    def loss_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # epoch 2 (an update epoch), its second of 3 steps
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(imageloop, "image_loss", loss_then_signal)
    assert main(cli(root, spec, "sig", params)) == EXIT_PREEMPTED
    state = torch.load(root / "sig" / "state.pt", weights_only=False)
    assert (state["epoch"], state["step_in_epoch"], state["step"]) == (1, 2, 5)
    assert not (root / "sig" / "model.pt").exists()
    monkeypatch.setattr(imageloop, "image_loss", real_loss)
    assert main(cli(root, spec, "sig", params)) == 0
    np.testing.assert_array_equal(refined(root, "sig-whole"), refined(root, "sig"))
    a, b = (torch.load(root / run / "model.pt", weights_only=False) for run in ("sig-whole", "sig"))
    for part in ("visual", "head"):
        assert all(torch.equal(a[part][key], b[part][key]) for key in a[part])
    pd.testing.assert_frame_equal(
        pd.read_parquet(root / "sig-whole" / "history.parquet"),
        pd.read_parquet(root / "sig" / "history.parquet"),
    )


@pytest.mark.slow
def test_mldecoder_finetune_and_gt_seen(world):
    root, spec, data = world
    params = {**FAST, "epochs": 2, "supervision": "gt_seen", "label_update": {"every": 1},
              "mldecoder": {**SMALL_HEAD, "backbone": "finetune"}}  # fmt: skip
    assert main(cli(root, spec, "mld", params, learner="mldecoder")) == 0
    ids = pq.read_table(root / "mld" / "labels_refined.parquet").column("image_id").to_numpy()
    gt = label_matrix(data.labels, ids, 6)[0][:, :4]
    np.testing.assert_array_equal(refined(root, "mld"), np.clip(gt, 1e-4, 1 - 1e-4).astype(np.float32))
    history = pd.read_parquet(root / "mld" / "history.parquet")
    assert (history.n_updates == 0).all()  # ground truth is never updated
    state = torch.load(root / "mld" / "model.pt", weights_only=False)
    assert state["visual"] is not None and state["text"].shape == (4, 32)
    _, w = read_embeddings(root / "label_classifier.parquet", id_column="label_index")
    test = data.manifest[data.manifest.split == "test"]
    scores = predict_finetuned(
        root / "mld" / "model.pt", list(test.path), spec, 4, "cpu", num_workers=0, text=w
    )
    assert scores.shape == (8, 6) and np.isfinite(scores).all()


@pytest.mark.slow
@pytest.mark.parametrize("learner", ["finetune", "mldecoder"])
def test_torchrun_two_gloo_processes(world, learner):
    root, spec, _ = world
    params = {**FAST, "epochs": 2, "label_update": {"every": 1}, "augment": "none",
              "mldecoder": {**SMALL_HEAD, "backbone": "finetune"}}  # fmt: skip
    run = f"ddp_{learner}"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "s3a.multilabel.imagetrain", *cli(root, spec, run, params, learner)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    history = pd.read_parquet(root / run / "history.parquet")
    assert history.n_updates.tolist() == [1, 2] and (history.mean_abs_dy > 0).all()
    y = refined(root, run)
    start = np.clip(initial_targets(root), 1e-4, 1 - 1e-4)
    # every image sits in one of the two shards (24 = 2 x 12), so every row was updated and synced
    assert (np.abs(y - start).max(axis=1) > 1e-6).all()
    state = torch.load(root / run / "state.pt", weights_only=False)
    np.testing.assert_array_equal(state["labels"], y)


def test_cli_errors_name_the_input_before_any_model(world, tmp_path):
    root, spec, _ = world
    args = cli(root, spec, "bad", {**FAST, "epochs": 1})
    missing = args.copy()
    missing[missing.index("--pseudo") + 1] = str(tmp_path / "nope.parquet")
    with pytest.raises(FileNotFoundError, match="--pseudo not found"):
        main(missing)
    with pytest.raises(ValueError, match=r"unknown multilabel.train.finetune keys \['epochz'\]"):
        main(cli(root, spec, "bad", {"epochz": 1}))
    gt = cli(root, spec, "bad", {**FAST, "supervision": "gt_seen"}, learner="mldecoder")
    gt = gt[: gt.index("--labels")] + gt[gt.index("--labels") + 2 :]
    with pytest.raises(ValueError, match="--labels is required with supervision gt_seen"):
        main(gt)
    assert not (root / "bad").exists()


def test_a_second_trainer_on_a_held_state_stops_with_one_line(world, capsys):
    """A worker left running holds the state's lock (s3a.jobguard): a rerun refuses, naming it."""
    from s3a.jobguard import hold_state_lock

    root, spec, _ = world
    args = cli(root, spec, "locked", {**FAST, "epochs": 1})
    state = args[args.index("--state") + 1]
    with hold_state_lock(state):
        assert main(args) == 1
    assert capsys.readouterr().err.startswith(
        f"python -m s3a.multilabel.imagetrain: another trainer (process {os.getpid()}) "
        f"is training on {state}; "
    )
    assert not (root / "locked" / "model.pt").exists()
