"""The ``multilabel.train`` slice -> the learners' parameters (s3a.multilabel.learners)."""

from __future__ import annotations

import copy
import json

import pytest
from helpers import ML_TRAIN as TRAIN

from s3a.multilabel.cdul.align import LabelUpdateParams
from s3a.multilabel.cdul.linear import LinearParams
from s3a.multilabel.decoder.head import MLDecoderParams
from s3a.multilabel.decoder.train import HeadTrainParams
from s3a.multilabel.imagetrain.network import ImageTrainParams
from s3a.multilabel.learners import head_params, image_train_config, learner_params, linear_uses_tiles
from s3a.multilabel.losses import AslParams


def test_defaults_equal_the_library_defaults():
    assert learner_params(TRAIN, "linear") == (LinearParams(), LabelUpdateParams())
    assert learner_params(TRAIN, "finetune") == ImageTrainParams()  # the finetune preset
    assert head_params(TRAIN) == (HeadTrainParams(), MLDecoderParams(), AslParams())
    assert linear_uses_tiles(TRAIN) is False


def test_mldecoder_image_config_splits_the_block():
    config = image_train_config(TRAIN, "mldecoder")
    json.dumps(config)  # the --params JSON of python -m s3a.multilabel.imagetrain
    assert set(config["mldecoder"]) == {
        "embed_dim", "heads", "ff_dim", "dropout", "query_chunk", "clip_loss_weight", "cls_loss_weight",
        "backbone", "backbone_lr",
    }  # fmt: skip
    assert config["epochs"] == 10 and config["lr"] == 1e-4 and "backbone" not in config
    params = learner_params(TRAIN, "mldecoder")
    head = HeadTrainParams()
    assert params.learner == "mldecoder" and params.mldecoder == MLDecoderParams()
    assert (params.epochs, params.batch_size, params.lr, params.weight_decay) == (
        head.epochs, head.batch_size, head.lr, head.weight_decay,
    )  # fmt: skip
    assert params.backbone == "frozen" and params.backbone_lr == 1e-5 and params.label_update.every == 10
    # the mldecoder preset also fills epochs/lr/... when the block leaves them out
    short = copy.deepcopy(TRAIN)
    for key in ("epochs", "batch_size", "lr", "weight_decay"):
        del short["mldecoder"][key]
    assert learner_params(short, "mldecoder") == params


def test_values_reach_the_parameters():
    train = copy.deepcopy(TRAIN)
    train["seed"] = 7
    train["asl"]["gamma_neg"] = 2.0
    train["label_update"]["warmup"] = 3
    train["linear"].update(epochs=5, tiles=True, net_loss="asl")
    train["finetune"].update(label_every=2, lr=3e-5)
    train["mldecoder"].update(embed_dim=64, heads=4, backbone="finetune", epochs=2, lr=1e-3)
    lin, update = learner_params(train, "linear")
    assert (lin.epochs, lin.seed, lin.net_loss, lin.asl.gamma_neg) == (5, 7, "asl", 2.0)
    assert (update.warmup, update.every) == (3, 10) and linear_uses_tiles(train)
    fin = learner_params(train, "finetune")
    assert (fin.label_update.every, fin.label_update.warmup, fin.lr, fin.seed) == (2, 3, 3e-5, 7)
    dec = learner_params(train, "mldecoder")
    assert (dec.mldecoder.embed_dim, dec.backbone, dec.epochs, dec.lr, dec.asl.gamma_neg) == (
        64, "finetune", 2, 1e-3, 2.0,
    )  # fmt: skip
    hp, mp, ap = head_params(train, device="cuda")
    assert (hp.epochs, hp.lr, hp.seed, hp.device, mp.embed_dim, mp.heads, ap.gamma_neg) == (
        2, 1e-3, 7, "cuda", 64, 4, 2.0,
    )  # fmt: skip


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown multi-label learner 'svm'"):
        learner_params(TRAIN, "svm")
    with pytest.raises(ValueError, match=r"unknown multilabel.train.linear keys \['momentum'\]"):
        learner_params({**TRAIN, "linear": {**TRAIN["linear"], "momentum": 0.9}}, "linear")
    with pytest.raises(ValueError, match=r"unknown multilabel.train keys \['learner'\]"):
        learner_params({**TRAIN, "learner": "linear"}, "finetune")
    with pytest.raises(ValueError, match=r"learners: unknown \['svm'\]"):
        head_params({**TRAIN, "learners": ["linear", "svm"]})
    # supervision is the mldecoder learner's: the others learn from the pseudo-labels regardless
    assert (
        learner_params({**TRAIN, "supervision": "gt_seen"}, "linear")[0] == learner_params(TRAIN, "linear")[0]
    )
    assert learner_params({**TRAIN, "supervision": "gt_seen"}, "finetune").supervision == "pseudo"
    assert learner_params({**TRAIN, "supervision": "gt_seen"}, "mldecoder").supervision == "gt_seen"
    with pytest.raises(ValueError, match="not linear"):
        image_train_config(TRAIN, "linear")
    with pytest.raises(ValueError, match="optimizer"):
        learner_params({**TRAIN, "linear": {**TRAIN["linear"], "optimizer": "lbfgs"}}, "linear")
