"""The CDUL rules' library functions (embed_label_set, embed_tiles, init_pseudolabels, the linear learner,
predict_images, evaluate_ml_stage) on the generated multi-label set with the tiny random model, and their
error cases."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from helpers import ML_TRAIN as TRAIN

from s3a.embed import EmbedParams, encode_images
from s3a.multilabel.aggregate import PseudoParams, ViewScores, aggregate, scores_table, view_scores
from s3a.multilabel.cdul.linear import (
    linear_features,
    load_linear,
    predict_linear,
    predict_linear_step,
    save_linear,
    train_linear_step,
)
from s3a.multilabel.cdul.pseudolabels import init_pseudolabels
from s3a.multilabel.classifier import embed_label_set, label_classifier
from s3a.multilabel.data.mosaic import build_generated_multilabel
from s3a.multilabel.data.tables import label_matrix, labels_table
from s3a.multilabel.decoder.zsl import evaluate_zsl
from s3a.multilabel.evaluate import evaluate_ml_stage, stage_scores
from s3a.multilabel.imagetrain.network import ImageTrainParams, build_net, predict_images, save_model
from s3a.multilabel.learners import linear_settings
from s3a.multilabel.metrics import EVAL_COLUMNS, EvalParams, evaluate_stage
from s3a.multilabel.views.tables import align_views, read_tiles
from s3a.multilabel.views.tiles import TileParams, embed_tiles

TILES = TileParams(num_workers=0)


@pytest.fixture(scope="module")
def world(tiny_clip, tmp_path_factory):
    """The generated set (8 train, 4 test images, canvas 96) with a corrupt test image appended,
    its global embeddings and label classifier."""
    root = tmp_path_factory.mktemp("gen")
    data = build_generated_multilabel(str(root / "g"), n_train=8, n_test=4, canvas=96)
    bad = root / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    row = data.manifest.iloc[[-1]].assign(image_id=12, path=str(bad))
    manifest = pd.concat([data.manifest, row], ignore_index=True)
    glob = encode_images(
        tiny_clip.model,
        tiny_clip.preprocess,
        manifest.path.tolist(),
        EmbedParams(batch_size=8, num_workers=0),
    )
    ids = manifest.image_id.to_numpy()[glob.index]
    w = label_classifier(tiny_clip.model, tiny_clip.tokenizer, data.label_set.prompt, "cdul")
    return data, manifest, ids, glob.embeddings, w


def _tiles(clip, manifest, split, tmp_path):
    table = embed_tiles(clip, manifest, split, TILES)
    path = tmp_path / f"{split}.parquet"
    pa.parquet.write_table(table, path)
    return table, read_tiles(path)


def test_embed_label_set(tiny_clip, world):
    data, _, _, _, w = world
    shuffled = data.label_set.iloc[::-1]
    table = embed_label_set(tiny_clip, shuffled, "cdul", batch_size=4)
    assert table.column_names == ["label_index", "embedding"] and table.num_rows == 6
    assert table.column("label_index").to_pylist() == list(range(6))
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(emb, w, atol=1e-6)
    with pytest.raises(ValueError, match="0..C-1"):
        embed_label_set(tiny_clip, data.label_set.assign(label_index=np.arange(6) + 1))
    with pytest.raises(ValueError, match="template set"):
        embed_label_set(tiny_clip, data.label_set, "nope")


def test_embed_tiles_skips_unreadable_and_pseudo_labels_align(tiny_clip, world, tmp_path):
    data, manifest, ids, glob, w = world
    table, (tile_ids, tile_emb) = _tiles(tiny_clip, manifest, "test", tmp_path)
    # 4 readable test images x 9 tiles; the corrupt image 12 is skipped like encode_images skips it
    assert table.num_rows == 36 and tile_ids.tolist() == [8, 9, 10, 11] and 12 not in ids
    assert table.column("box").to_pylist()[8] == [64, 64, 96, 96]  # canvas 96, 3x3 grid of 32 px
    test = np.isin(ids, tile_ids)
    params = PseudoParams(zeta=0.3, lam=0.5)
    rev = slice(None, None, -1)  # any row order: paired by image_id
    out = init_pseudolabels(ids[test][rev], glob[test][rev], tile_ids, tile_emb, w, params)
    expected = scores_table(tile_ids, view_scores(glob[test], tile_emb, w, params), params)
    assert out.column_names == ["image_id", "s_global", "s_alpha", "s_beta", "s_mean", "s_final"]
    assert out.column("image_id").to_pylist() == [8, 9, 10, 11]
    for name in out.column_names[1:]:
        np.testing.assert_allclose(
            np.stack(out.column(name).to_numpy(zero_copy_only=False)),
            np.stack(expected.column(name).to_numpy(zero_copy_only=False)),
            rtol=1e-6,
        )
    with pytest.raises(
        ValueError, match=r"different images: 0 only in the embeddings .* 1 only in the tiles"
    ):
        init_pseudolabels(ids[test][1:], glob[test][1:], tile_ids, tile_emb, w, params)
    with pytest.raises(ValueError, match="no images in split 'val'"):
        embed_tiles(tiny_clip, manifest, "val", TILES)


def test_align_views_errors():
    g, t = np.ones((3, 4)), np.ones((3, 2, 4))
    with pytest.raises(ValueError, match="repeat image ids"):
        align_views(np.array([1, 1, 2]), g, np.array([1, 2, 3]), t)
    with pytest.raises(ValueError, match="differ in D"):
        align_views(np.array([1, 2, 3]), g, np.array([3, 2, 1]), np.ones((3, 2, 5)))
    ids, gg, tt = align_views(np.array([3, 1, 2]), np.arange(3)[:, None] * g, np.array([2, 3, 1]), t)
    assert ids.tolist() == [1, 2, 3] and gg[:, 0].tolist() == [1, 2, 0]


def test_train_and_predict_linear(tiny_clip, world, tmp_path):
    data, manifest, ids, glob, w = world
    _, (tile_ids, tile_emb) = _tiles(tiny_clip, manifest, "train", tmp_path)
    train_rows = np.isin(ids, tile_ids)
    pseudo = PseudoParams()
    table = init_pseudolabels(ids[train_rows], glob[train_rows], tile_ids, tile_emb, w, pseudo)
    train = copy.deepcopy(TRAIN)
    train["linear"].update(epochs=3, batch_size=4, tiles=True)
    train["label_update"]["every"] = 1
    out = train_linear_step(
        *linear_settings(train), table, pseudo, ids[train_rows], glob[train_rows], tile_ids, tile_emb, w,
        labels=data.labels, manifest=manifest, state_path=str(tmp_path / "state.pt"), progress=False,
    )  # fmt: skip
    assert out.tiles and out.head.linear.in_features == 2 * glob.shape[1]
    assert out.history.epoch.tolist() == [1, 2, 3] and out.history.n_updates.tolist() == [1, 2, 3]
    assert np.isfinite(out.history.gt_label_map).all()
    assert out.labels.column_names == ["image_id", "y"]
    assert out.labels.schema.field("y").type == pa.list_(pa.float32(), 6)
    assert out.labels.column("image_id").to_pylist() == list(range(8))
    y = np.stack(out.labels.column("y").to_numpy(zero_copy_only=False))
    assert ((y > 0) & (y < 1)).all()
    save_linear(out.head, tmp_path / "model.pt", out.tiles)
    head, tiles = load_linear(tmp_path / "model.pt")
    assert tiles
    pred = predict_linear_step(head, tiles, ids[train_rows][::-1], glob[train_rows][::-1], tile_ids, tile_emb)
    assert pred.column_names == ["image_id", "scores"] and pred.column("image_id").to_pylist() == list(
        range(8)
    )
    expected = predict_linear(out.head, linear_features(glob[train_rows], tile_emb))
    np.testing.assert_allclose(
        np.stack(pred.column("scores").to_numpy(zero_copy_only=False)), expected, rtol=1e-6
    )
    with pytest.raises(ValueError, match="trained with tiles"):
        predict_linear_step(head, True, ids, glob)
    with pytest.raises(ValueError, match="takes 64 features, got 32"):
        predict_linear_step(head, False, ids, glob)
    # without tiles the features are the global embeddings; training on test images is refused
    train["linear"]["tiles"] = False
    plain = train_linear_step(
        *linear_settings(train),
        table,
        pseudo,
        ids[train_rows],
        glob[train_rows],
        None,
        None,
        w,
        progress=False,
    )
    assert not plain.tiles and plain.head.linear.in_features == glob.shape[1]
    with pytest.raises(ValueError, match="not 'train' images"):
        train_linear_step(
            *linear_settings(train),
            table,
            pseudo,
            ids,
            glob,
            None,
            None,
            w,
            manifest=manifest,
            progress=False,
        )
    with pytest.raises(ValueError, match="no pseudo-labels"):
        train_linear_step(*linear_settings(train), table, pseudo, ids, glob, None, None, w, progress=False)
    other = tmp_path / "other.pt"
    save_model(
        build_net(copy.deepcopy(tiny_clip.model.visual), w, ImageTrainParams()), other, ImageTrainParams()
    )
    with pytest.raises(ValueError, match="not a model of the linear learner"):
        load_linear(other)


def test_predict_images_leaves_out_unreadable(tiny_clip, tiny_checkpoint, world, tmp_path):
    _, manifest, _, _, w = world
    net = build_net(copy.deepcopy(tiny_clip.model.visual), w, ImageTrainParams())
    net.head.linear.weight.data.normal_()  # build_net leaves the head at zero
    save_model(net, tmp_path / "model.pt", ImageTrainParams())
    spec = {"arch": "s3a-tiny", "pretrained": str(tiny_checkpoint)}
    table = predict_images(tmp_path / "model.pt", manifest, "test", spec, 4, "pil", 0, "cpu", progress=False)
    assert table.column_names == ["image_id", "scores"]
    assert table.column("image_id").to_pylist() == [8, 9, 10, 11]  # 12 is unreadable
    scores = np.stack(table.column("scores").to_numpy(zero_copy_only=False))
    assert scores.shape == (4, 6) and ((scores > 0) & (scores < 1)).all()


# ------------------------------------------------------------------------------- evaluation stages


@pytest.fixture(scope="module")
def planted():
    """A 10-image, 4-label world (image i has labels i % 4 and (i + 1) % 4; train 0-5, test 6-9)."""
    rng = np.random.default_rng(0)
    ids = np.arange(10)
    labels = pd.DataFrame(
        {
            "image_id": np.repeat(ids, 2),
            "label_index": np.stack([ids % 4, (ids + 1) % 4], 1).reshape(-1).astype(np.int32),
            "difficult": False,
            "area_fraction": np.float32(0.5),
            "max_instance_area": np.float32(np.nan),
        }
    )
    label_set = pd.DataFrame(
        {"label_index": np.arange(4, dtype=np.int32), "seen": [True, True, False, False]}
    )
    manifest = pd.DataFrame({"image_id": ids, "split": ["train"] * 6 + ["test"] * 4})
    soft = rng.dirichlet(np.ones(4), size=(4, 10)).astype(np.float32)
    views = ViewScores(*soft)
    return labels, label_set, manifest, views


def test_evaluate_zero_shot_stages(planted):
    labels, label_set, manifest, views = planted
    test = np.arange(6, 10)
    table = scores_table(test, ViewScores(*(v[6:] for v in vars(views).values())))
    pseudo = PseudoParams(zeta=0.3, lam=-0.5)
    agg, final = aggregate(ViewScores(*(v[6:] for v in vars(views).values())), pseudo)
    for stage, expected in (("zs_global", views.s_global[6:]), ("zs_local", agg), ("zs_final", final)):
        rows = evaluate_ml_stage(
            stage, table, manifest, labels, label_set, "test", pseudo=pseudo, dataset="d", model="m"
        )
        assert list(rows.columns) == list(EVAL_COLUMNS) and rows.subset.tolist() == ["all"]  # no areas
        ref = evaluate_stage(test, expected, labels, label_set, thresholded=False)
        assert rows["map"].iloc[0] == pytest.approx(ref["map"].iloc[0])
        assert np.isnan(rows["c_prec"].iloc[0])  # softmax scores are not thresholded
        assert rows[["dataset", "model", "stage", "split"]].iloc[0].tolist() == ["d", "m", stage, "test"]
    # ZSL: all + seen, then the ZSL row on the renormalised unseen scores and the GZSL row
    zsl = evaluate_ml_stage("zs_global", table, manifest, labels, label_set, "test", "zsl")
    assert zsl.subset.tolist() == ["all", "seen", "unseen", "gzsl"]
    g = views.s_global[6:, 2:]
    ref = evaluate_zsl(test, g / g.sum(1, keepdims=True), labels, label_set, "zsl", thresholded=False)
    assert zsl["map"].iloc[2] == pytest.approx(ref["map"].iloc[0])
    assert zsl.n_labels.tolist() == [4, 2, 2, 4]


def test_evaluate_learner_and_refined_stages(planted):
    labels, label_set, manifest, _ = planted
    y, _, _ = label_matrix(labels, np.arange(10), 4)
    perfect = pa.table({"image_id": np.arange(6, 10)}).append_column(
        "scores", labels_table(np.arange(6, 10), y[6:] * 0.8 + 0.1).column("y")
    )
    rows = evaluate_ml_stage("linear", perfect, manifest, labels, label_set, "test", params=EvalParams())
    assert rows["map"].iloc[0] == pytest.approx(100.0) and rows["c_prec"].iloc[0] == pytest.approx(100.0)
    refined = labels_table(np.arange(6), 1 - y[:6])  # every label wrong
    rows = evaluate_ml_stage("refined_linear", refined, manifest, labels, label_set, "train")
    assert rows["o_prec"].iloc[0] == 0.0 and rows.n_images.iloc[0] == 6
    areas = labels.assign(max_instance_area=np.float32(100.0))  # small objects (< 32^2 px)
    rows = evaluate_ml_stage("refined_linear", refined, manifest, areas, label_set, "train")
    assert rows.subset.tolist() == ["all", "small"]
    large = labels.assign(max_instance_area=np.float32(5000.0))  # none: no small subset
    rows = evaluate_ml_stage("refined_linear", refined, manifest, large, label_set, "train")
    assert rows.subset.tolist() == ["all"]


def test_evaluate_errors(planted):
    labels, label_set, manifest, views = planted
    table = scores_table(np.arange(10), views)
    with pytest.raises(ValueError, match="unknown multi-label stage 'zs_best'"):
        evaluate_ml_stage("zs_best", table, manifest, labels, label_set, "test")
    with pytest.raises(ValueError, match="not 'test' images"):
        evaluate_ml_stage("zs_global", table, manifest, labels, label_set, "test")
    with pytest.raises(ValueError, match="setting must be one of"):
        evaluate_ml_stage("pseudo_train", table, manifest, labels, label_set, "train", "gzsl")
    seen = label_set.assign(seen=True)
    train = scores_table(np.arange(6), ViewScores(*(v[:6] for v in vars(views).values())))
    with pytest.raises(ValueError, match="needs unseen labels"):
        evaluate_ml_stage("pseudo_train", train, manifest, labels, seen, "train", "zsl")
    narrow = labels_table(np.arange(6), np.ones((6, 2)))
    with pytest.raises(ValueError, match="scores over 2 labels but the label set has 4"):
        evaluate_ml_stage("refined_mldecoder", narrow, manifest, labels, label_set, "train")
    with pytest.raises(ValueError, match="no 'scores' column"):
        stage_scores("finetune", narrow)


def test_read_classifier_orders_and_checks_label_index(tmp_path):
    from s3a.io import write_embeddings
    from s3a.multilabel.classifier import read_classifier

    w = np.eye(3, dtype=np.float32)
    write_embeddings(np.array([2, 0, 1]), w, tmp_path / "w.parquet", id_column="label_index")
    np.testing.assert_array_equal(read_classifier(tmp_path / "w.parquet"), w[[1, 2, 0]])
    write_embeddings(np.array([1, 2, 3]), w, tmp_path / "bad.parquet", id_column="label_index")
    with pytest.raises(ValueError, match="label_index must be 0..C-1"):
        read_classifier(tmp_path / "bad.parquet")
