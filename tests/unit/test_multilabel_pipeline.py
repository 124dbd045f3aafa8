"""The multi-label library end to end on the generated set with the tiny random CLIP model:
manifest -> global embeddings (``s3a.embed``) -> tiles -> label classifier -> pseudo-labels ->
linear learner -> evaluation rows (what the workflow rules of spec 10 will chain)."""

from __future__ import annotations

import numpy as np
import pytest

from s3a.embed import EmbedParams, encode_images
from s3a.multilabel.aggregate import PseudoParams, aggregate, view_scores
from s3a.multilabel.cdul.align import LabelUpdateParams
from s3a.multilabel.cdul.linear import LinearParams, linear_features, predict_linear, train_linear
from s3a.multilabel.classifier import label_classifier, template_set
from s3a.multilabel.data.mosaic import build_generated_multilabel
from s3a.multilabel.metrics import EVAL_COLUMNS, evaluate_stage
from s3a.multilabel.views.tiles import TileParams, encode_tiles


def test_template_sets():
    assert template_set("cdul") == ("a photo of a {}.",)
    assert len(template_set("imagenet7")) == 7
    with pytest.raises(ValueError, match="template set"):
        template_set("nope")


@pytest.mark.slow
def test_pipeline_on_generated_set(tiny_clip, tmp_path):
    data = build_generated_multilabel(str(tmp_path / "g"), n_train=16, n_test=8, canvas=96)
    man = data.manifest
    paths = man["path"].tolist()
    glob = encode_images(
        tiny_clip.model, tiny_clip.preprocess, paths, EmbedParams(batch_size=8, num_workers=0)
    )
    tiles = encode_tiles(
        tiny_clip.model, tiny_clip.preprocess, paths, TileParams(num_workers=0), progress=False
    )
    assert glob.index.tolist() == tiles.index.tolist() == list(range(len(paths)))
    w = label_classifier(tiny_clip.model, tiny_clip.tokenizer, data.label_set["prompt"], "imagenet7")
    assert w.shape == (6, glob.embeddings.shape[1])
    v = view_scores(glob.embeddings, tiles.embeddings, w, PseudoParams())
    _, final = aggregate(v)
    ids = man["image_id"].to_numpy()
    train = (man["split"] == "train").to_numpy()
    x = linear_features(glob.embeddings, tiles.embeddings)
    res = train_linear(
        x[train],
        final[train],
        w,
        LinearParams(epochs=3, batch_size=8),
        LabelUpdateParams(every=1),
        progress=False,
    )
    frames = [
        evaluate_stage(
            ids, final, data.labels, data.label_set, ("all", "small"), thresholded=False, stage="zs_final"
        ),
        evaluate_stage(
            ids[~train], predict_linear(res.head, x[~train]), data.labels, data.label_set, stage="linear"
        ),
    ]
    for frame in frames:
        assert list(frame.columns) == list(EVAL_COLUMNS)
        assert 0 <= frame["map"].iloc[0] <= 100
    # canvas 96: the smallest region is 48 x 48 px >= 32 x 32, so the small subset has no positives
    small = frames[0].iloc[1]
    assert small["subset"] == "small" and np.isnan(small["map"]) and small["n_labels_no_pos"] == 6
    assert frames[0]["n_images"].tolist() == [24, 24] and frames[1]["n_images"].tolist() == [8]
    assert frames[0]["n_labels"].iloc[0] == 6
