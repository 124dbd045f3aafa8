"""Data tier: zero-shot multi-label with the CLIP-Decoder head on real-photo mosaics.

The mosaics (:func:`s3a.multilabel.data.mosaic.build_mosaic`, 100 classes of ``imagenet-sample``, canvas
336) are encoded by the weightless stand-in pixel encoder of ``test_multilabel_mosaic.py``: the 3 x 3
tiles are the head's patch tokens (9 x 512), the class photos its label "text" embeddings. 25 of
the 100 labels are held out as unseen (``seen`` column; the NUS-WIDE protocol in miniature): the head
is trained on the seen labels' ground truth only (``gt_seen``) and must rank the unseen labels.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_multilabel_mosaic import StandIn, _photo_of

from s3a.multilabel.data.mosaic import build_mosaic
from s3a.multilabel.data.tables import label_matrix
from s3a.multilabel.decoder.head import MLDecoderParams
from s3a.multilabel.decoder.train import HeadTrainParams, predict_head, train_head
from s3a.multilabel.decoder.zsl import evaluate_zsl, gt_targets, zsl_split
from s3a.multilabel.metrics import mean_average_precision

pytestmark = [pytest.mark.slow, pytest.mark.data]

K, N_UNSEEN = 100, 25


def test_head_trained_on_seen_labels_ranks_unseen_labels_above_chance(shared_data, tmp_path):
    source = shared_data / "imagenet-sample"
    if not source.is_dir():
        pytest.skip(f"{source} is absent")
    data = build_mosaic(str(tmp_path), str(source), classes=K, n_train=300, n_test=120, canvas=336, seed=0)
    enc = StandIn([_photo_of(source, w) for w in data.label_set["wnid"]])
    _, tokens = enc.views(data.manifest["path"].tolist())
    seen = np.ones(K, bool)
    seen[np.random.default_rng(0).choice(K, N_UNSEEN, replace=False)] = False
    label_set = data.label_set.assign(seen=seen)
    split = zsl_split(data.manifest, data.labels, label_set)
    targets = gt_targets(data.labels, split.train_ids, split.seen, K)
    res = train_head(
        tokens[split.train_ids].astype(np.float32),
        targets,
        enc.labels[split.seen],
        HeadTrainParams(epochs=30, batch_size=16, lr=3e-3),
        MLDecoderParams(embed_dim=128, heads=4, ff_dim=256, dropout=0.1),
        progress=False,
    )
    ids = split.zsl_test_ids
    scores = predict_head(res.head, tokens[ids], enc.labels)  # all 100 labels; ZSL takes the unseen
    zsl = evaluate_zsl(ids, scores, data.labels, label_set, "zsl").iloc[0]
    y, _, _ = label_matrix(data.labels, ids, K)
    y = y[:, split.unseen]
    chance = np.mean(
        [mean_average_precision(y, np.random.default_rng(i).random(y.shape))[0] for i in range(50)]
    )
    # measured (mosaic and unseen draw seeds 0/1/2): ZSL mAP 21.4/21.1/15.4 against chance
    # 10.1/10.5/11.9, i.e. margins +11.3/+10.6/+3.5 (the test uses seed 0); with 20 classes
    # (15 seen) the margin is only +1.6..+3.6: generalising to unseen queries needs many seen ones
    assert zsl["n_images"] == len(ids) > 30
    assert zsl["map"] >= chance + 5, (zsl["map"], chance)
