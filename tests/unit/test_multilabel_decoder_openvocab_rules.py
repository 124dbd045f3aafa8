"""The step functions of the CLIP-Decoder and open-vocabulary rules (``s3a.multilabel.decoder.train``,
``s3a.multilabel.openvocab.scores``) on tiny inputs: tokens streamed to a memmap and read back, the head
trained with either supervision and rebuilt from its file, view top-k, aggregation and discovery with
the vocabulary's ids, and the exact / hierarchical evaluation (with the missing-WordNet error)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers import planted_multilabel, unit
from PIL import Image
from test_multilabel_openvocab import DATA_NOUN, VOCAB_NAMES, VOCAB_WNIDS

from s3a.embed import EmbedParams
from s3a.io import write_table
from s3a.multilabel.aggregate import PseudoParams, ViewScores, scores_table
from s3a.multilabel.data.tables import ImageRecord, assemble, predictions_table, read_predictions
from s3a.multilabel.decoder.head import MLDecoderParams, encode_patch_tokens
from s3a.multilabel.decoder.tokens import embed_patch_tokens, load_tokens
from s3a.multilabel.decoder.train import (
    HeadTrainParams,
    load_head_model,
    predict_mldecoder,
    save_head_model,
    train_head,
    train_mldecoder,
)
from s3a.multilabel.evaluate import stage_scores
from s3a.multilabel.learners import head_params as head_settings
from s3a.multilabel.losses import AslParams
from s3a.multilabel.metrics import EVAL_COLUMNS
from s3a.multilabel.openvocab.discovery import DISCOVERED_COLUMNS, discover_frequency, openvocab_labels
from s3a.multilabel.openvocab.hierarchy import DISCOVERY_METRIC_COLUMNS, evaluate_openvocab_step
from s3a.multilabel.openvocab.scores import image_scores, openvocab_scores, view_topk

HEAD = {"embed_dim": 16, "heads": 2, "ff_dim": 32, "dropout": 0.1, "query_chunk": 3}
TRAIN = {
    "seed": 0,
    "asl": {"gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05, "eps": 1e-8},
    "mldecoder": {
        **HEAD,
        "epochs": 2,
        "batch_size": 4,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "backbone": "frozen",
    },
}


def _images(folder, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_patch_tokens_stream_to_a_memmap_and_back(tiny_clip, tmp_path):
    paths = _images(tmp_path, 5)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    paths.insert(2, str(tmp_path / "bad.png"))
    ids = np.array([10, 11, 12, 13, 14, 15])
    params = EmbedParams(batch_size=2, num_workers=0, decoder="pil")
    # chunks of 2 paths: the failed image falls in the second chunk; the file is shrunk to 5 rows
    n = embed_patch_tokens(
        tiny_clip.model, tiny_clip.preprocess, paths, ids, tmp_path / "t.npy", tmp_path / "ids.parquet",
        params, chunk_images=2,
    )  # fmt: skip
    assert n == 5 and not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.part"))
    got_ids, tokens = load_tokens(tmp_path / "t.npy", tmp_path / "ids.parquet")
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.float16
    assert got_ids.tolist() == [10, 11, 13, 14, 15]
    index, expected, failed = encode_patch_tokens(
        tiny_clip.model, tiny_clip.preprocess, paths, params, dtype=np.float16
    )
    assert index.tolist() == [0, 1, 3, 4, 5] and len(failed) == 1
    assert tokens.shape == expected.shape and tokens.shape[0] == 5
    np.testing.assert_array_equal(np.asarray(tokens), expected)
    with pytest.raises(ValueError, match="none of the 1 images"):
        embed_patch_tokens(
            tiny_clip.model, tiny_clip.preprocess, [str(tmp_path / "bad.png")], [1],
            tmp_path / "x.npy", tmp_path / "x.parquet", params,
        )  # fmt: skip
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "x.parquet").exists()
    with pytest.raises(ValueError, match="2 paths but 1 image ids"):
        embed_patch_tokens(tiny_clip.model, tiny_clip.preprocess, paths[:2], [1], "a.npy", "b.parquet")
    np.save(tmp_path / "short.npy", np.zeros((2, 3, 4), np.float16))
    with pytest.raises(ValueError, match="does not match the 5 ids"):
        load_tokens(tmp_path / "short.npy", tmp_path / "ids.parquet")


@pytest.fixture
def token_world(tmp_path):
    """12 train images with random float16 tokens (a memmap), 5 labels (3 seen), labels where
    images 0-2 hold only unseen labels, a random label classifier and a pseudo table."""
    rng = np.random.default_rng(1)
    n, p, d, c = 12, 4, 8, 5
    np.save(tmp_path / "tokens.npy", rng.normal(size=(n, p, d)).astype(np.float16))
    tokens = np.load(tmp_path / "tokens.npy", mmap_mode="r")
    ids = np.arange(100, 100 + n)
    nan = float("nan")
    objs = {i: ((3,) if i < 3 else (i % 3, 3 + i % 2)) for i in range(n)}
    records = [
        ImageRecord(f"/p/{i:02d}.jpg", "train", tuple((k, False, nan) for k in objs[i])) for i in range(n)
    ]
    data = assemble("toy", records, [f"l{k}" for k in range(c)])
    manifest = data.manifest.assign(image_id=data.manifest["image_id"] + 100)
    labels = data.labels.assign(image_id=data.labels["image_id"] + 100)
    label_set = data.label_set.assign(seen=data.label_set["label_index"] < 3)
    w = unit(rng.normal(size=(c, d))).astype(np.float32)
    views = ViewScores(*[rng.dirichlet(np.ones(c), n).astype(np.float32) for _ in range(4)])
    pseudo = scores_table(ids, views)
    return ids, tokens, w, manifest, labels, label_set, pseudo


def test_train_mldecoder_pseudo_and_gt_seen_match_train_head(token_world, tmp_path):
    ids, tokens, w, manifest, labels, label_set, pseudo = token_world
    fit = HeadTrainParams(epochs=2, batch_size=4, lr=1e-3, weight_decay=1e-4, seed=0)
    head_params, asl = MLDecoderParams(**HEAD), AslParams()
    for supervision in ("pseudo", "gt_seen"):
        trained = train_mldecoder(
            ids, tokens, w, *head_settings(TRAIN), supervision, pseudo, {"zeta": 0.5},
            manifest, labels, label_set,
        )  # fmt: skip
        if supervision == "pseudo":
            from s3a.multilabel.aggregate import pseudo_targets

            rows, cols = np.arange(12), np.arange(5)
            targets = pseudo_targets(pseudo, ids, PseudoParams(zeta=0.5))
        else:  # images 0-2 have no seen label: the head trains on rows 3.. and the 3 seen columns
            rows, cols = np.arange(3, 12), np.arange(3)
            y = np.zeros((12, 5), np.float32)
            y[labels.image_id - 100, labels.label_index] = 1
            targets = y[3:, :3]
        assert trained.label_indices.tolist() == cols.tolist()
        assert trained.history["epoch"].tolist() == [1, 2] and trained.params == head_params
        direct = train_head(np.asarray(tokens)[rows], targets, w[cols], fit, head_params, asl, False)
        for key, value in direct.head.state_dict().items():
            torch.testing.assert_close(trained.head.state_dict()[key], value, rtol=0, atol=0)
        pd.testing.assert_frame_equal(trained.history, direct.history)
    # the head file rebuilds the head; predictions cover every label in label_index order
    save_head_model(tmp_path / "model.pt", trained)
    head, meta = load_head_model(tmp_path / "model.pt")
    assert meta["n_labels"] == 3 and meta["label_indices"].tolist() == [0, 1, 2]
    scores = predict_mldecoder(head, tokens, w, image_chunk=5, device="cpu")
    assert scores.shape == (12, 5) and ((scores > 0) & (scores < 1)).all()
    expected = predict_mldecoder(trained.head, np.asarray(tokens, np.float32), w, device="cpu")
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    pq_path = tmp_path / "pred.parquet"
    import pyarrow.parquet as pq

    pq.write_table(predictions_table(ids, scores), pq_path)
    got_ids, got = read_predictions(pq_path)
    assert got_ids.tolist() == ids.tolist() and np.array_equal(got, scores)


def test_train_mldecoder_errors(token_world, tmp_path):
    ids, tokens, w, manifest, labels, label_set, pseudo = token_world
    lab = (w, *head_settings(TRAIN))
    with pytest.raises(ValueError, match="supervision must be one of"):
        train_mldecoder(ids, tokens, *lab, "gt_all")
    with pytest.raises(ValueError, match="pseudo-label table"):
        train_mldecoder(ids, tokens, *lab, "pseudo")
    with pytest.raises(ValueError, match="manifest, labels and label_set"):
        train_mldecoder(ids, tokens, *lab, "gt_seen", manifest=manifest)
    with pytest.raises(ValueError, match="label_space: all"):  # every label seen: no ZSL split
        train_mldecoder(ids, tokens, *lab, "gt_seen", None, None, manifest, labels,
                        label_set.assign(seen=True))  # fmt: skip
    other = scores_table(ids + 1000, ViewScores(*[np.ones((12, 5), np.float32)] * 4))
    with pytest.raises(ValueError, match="no train image with patch tokens has pseudo targets"):
        train_mldecoder(ids, tokens, *lab, "pseudo", other)
    torch.save({"learner": "finetune"}, tmp_path / "image.pt")
    with pytest.raises(ValueError, match="not a CLIP-Decoder head trained on patch tokens"):
        load_head_model(tmp_path / "image.pt")


@pytest.fixture(scope="module")
def views_world():
    """The planted world (60 images, 9 tiles, 20 labels) and a 50-name vocabulary holding the label
    prototypes, whose ids are 1000 + row in a shuffled order."""
    _, glob, tiles, t = planted_multilabel(0, sigma_t=0.5, n=60, c=20, d=32)
    rng = np.random.default_rng(3)
    vocab = np.concatenate([t, unit(rng.normal(size=(30, 32)))]).astype(np.float32)
    perm = rng.permutation(50)
    return np.arange(60) + 7, glob.astype(np.float32), tiles.astype(np.float32), vocab[perm], perm + 1000


def test_openvocab_scores_use_the_vocabulary_ids(views_world):
    ids, glob, tiles, vocab, vocab_ids = views_world
    table = openvocab_scores(ids, glob, tiles, vocab_ids, vocab, {"topk_per_view": 5, "temperature": 50.0})
    order = np.argsort(vocab_ids)
    direct = view_topk(ids, glob, tiles, vocab[order], 5, 50.0)
    assert len(table) == 60 * 10 * 5 and table["image_id"].iloc[0] == 7
    assert table["vocab_index"].tolist() == (direct["vocab_index"] + 1000).tolist()
    np.testing.assert_array_equal(table["prob"], direct["prob"])


def test_openvocab_labels_none_frequency_and_cluster_vote(views_world):
    ids, glob, tiles, vocab, vocab_ids = views_world
    views = openvocab_scores(ids, glob, tiles, vocab_ids, vocab, {"topk_per_view": 5})
    scores, none = openvocab_labels(views, {"discovery": "none"}, {"zeta": 0.3})
    assert list(none.columns) == list(DISCOVERED_COLUMNS) and len(none) == 0
    assert none.dtypes["vocab_index"] == np.int64
    pd.testing.assert_frame_equal(scores, image_scores(views, 9, PseudoParams(zeta=0.3)))
    _, freq = openvocab_labels(views, {"discovery": "frequency", "n_labels": 4})
    pd.testing.assert_frame_equal(freq, discover_frequency(image_scores(views, 9), 4))
    ov = {"discovery": "cluster_vote", "n_labels": 20, "views": "all", "max_points": None}
    kmeans = {"n_init": 2, "max_iter": 50, "seed": 0, "backend": "torch", "device": "cpu"}
    _, found = openvocab_labels(views, ov, None, glob, tiles, vocab_ids, vocab, kmeans, {"n_iter": 2}, "cpu")
    assert list(found.columns) == list(DISCOVERED_COLUMNS)
    assert found["vocab_index"].isin(vocab_ids).all() and 1 <= len(found) <= 20
    assert found["score_sum"].sum() == 60 * 10  # every view (global and tiles) holds one name
    # the 20 label prototypes are rows perm < 20 of the shuffled vocabulary: most discovered names
    assert found["vocab_index"].isin(vocab_ids[vocab_ids < 1020]).mean() >= 0.8
    with pytest.raises(ValueError, match="needs openvocab.n_labels"):
        openvocab_labels(views, {"discovery": "frequency", "n_labels": None})
    with pytest.raises(ValueError, match="none, frequency or cluster_vote"):
        openvocab_labels(views, {"discovery": "kmeans", "n_labels": 3})
    with pytest.raises(ValueError, match="needs the tile embeddings"):
        openvocab_labels(views, {"discovery": "cluster_vote", "n_labels": 3})
    with pytest.raises(ValueError, match="tiles or all"):
        openvocab_labels(views, {**ov, "views": "global"}, None, glob, tiles, vocab_ids, vocab)


@pytest.fixture
def pets(tmp_path):
    """Labels cat, dog, horse (no vocabulary entry) on one train image (id 0, cat) and 4 test images
    (1 dog, 2 cat, 3 both, 4 horse); the 6-name WordNet vocabulary of the open-vocabulary tests and its
    data.noun."""
    nan = float("nan")
    objs = {0: (0,), 1: (1,), 2: (0,), 3: (0, 1), 4: (2,)}
    records = [
        ImageRecord(f"/p/{i}.jpg", "train" if i == 0 else "test", tuple((c, False, nan) for c in objs[i]))
        for i in range(5)
    ]
    data = assemble("pets", records, ["cat", "dog", "horse"], wnids=["n02121808", "n02084071", None])
    vocabulary = pd.DataFrame(
        {"vocab_index": np.arange(6), "name": VOCAB_NAMES, "synset_ids": [[w] for w in VOCAB_WNIDS]}
    )
    (tmp_path / "wn").mkdir()
    (tmp_path / "wn" / "data.noun").write_text(DATA_NOUN)
    scores = pd.DataFrame(
        {
            "image_id": [1, 2, 2, 3, 3, 4],
            "vocab_index": [3, 1, 3, 4, 1, 2],
            "score": [0.9, 0.8, 0.1, 0.5, 0.3, 0.7],
        }
    )
    return data, vocabulary, scores, tmp_path / "wn"


def test_evaluate_openvocab_exact_hierarchical_and_discovery(pets):
    data, vocabulary, scores, wn = pets
    label_set = data.label_set.assign(vocab_index=-1)  # filled from the vocabulary by the step
    discovered = pd.DataFrame({"rank": [0], "vocab_index": [3], "score_sum": [1.0], "n_images": [1]})
    ov = {"hierarchy": True, "wordnet_dir": str(wn)}
    exact, hier = evaluate_openvocab_step(
        scores, discovered, data.labels, label_set, data.manifest, vocabulary, ov, dataset="pets", model="m"
    )
    assert list(exact.columns) == [*EVAL_COLUMNS, *DISCOVERY_METRIC_COLUMNS]
    for rows, stage, m, recall in ((exact, "ov_exact", 75.0, 0.0), (hier, "ov_hier", 100.0, 50.0)):
        row = rows.iloc[0]
        assert (row.dataset, row.model, row.stage, row.split, row.subset) == (
            "pets",
            "m",
            stage,
            "test",
            "all",
        )
        # 4 test images (image 3 has no kept name of a label), horse is out of the vocabulary
        assert row.n_images == 4 and row.n_labels == 2 and row["map"] == pytest.approx(m)
        assert (row.n_discovered, row.discovery_recall) == (1.0, recall)
    assert hier.iloc[0].discovery_precision == 100.0 and exact.iloc[0].discovery_precision == 0.0
    no_disc, flat = evaluate_openvocab_step(
        scores, discovered.iloc[:0], data.labels, label_set, data.manifest, vocabulary, {"hierarchy": False}
    )
    assert no_disc[list(DISCOVERY_METRIC_COLUMNS)].isna().all(axis=None) and no_disc["map"].iloc[0] == 75.0
    assert len(flat) == 0 and list(flat.columns) == list(no_disc.columns)


def test_evaluate_openvocab_errors(pets):
    data, vocabulary, scores, wn = pets
    missing = wn.parent / "no_wordnet"
    with pytest.raises(FileNotFoundError, match=f"{missing}.*wordnet-base"):
        evaluate_openvocab_step(
            scores, scores.iloc[:0], data.labels, data.label_set, data.manifest, vocabulary,
            {"hierarchy": True, "wordnet_dir": str(missing)},
        )  # fmt: skip
    both = pd.concat([scores, scores.iloc[:1].assign(image_id=0)])  # image 0 is a train image
    with pytest.raises(ValueError, match="one split, found \\['test', 'train'\\]"):
        evaluate_openvocab_step(
            both,
            scores.iloc[:0],
            data.labels,
            data.label_set,
            data.manifest,
            vocabulary,
            {"hierarchy": False},
        )


def test_predictions_table_schema():
    table = predictions_table(np.array([3, 1]), np.ones((2, 4)))
    assert table.schema.field("scores").type == pa.list_(pa.float64(), 4)
    assert table.column_names == ["image_id", "scores"]


def test_predictions_keep_sigmoid_scores_near_one_apart(tmp_path):
    # sigmoid of logits 17 and 20: both 1.0 in float32, apart in the table and in evaluation
    scores = 1.0 / (1.0 + np.exp(-np.array([[17.0], [20.0]])))
    write_table(predictions_table(np.array([3, 1]), scores), tmp_path / "p.parquet")
    _, got = read_predictions(tmp_path / "p.parquet")
    assert got[1, 0] > got[0, 0] and got[0, 0] < 1.0
    _, ranked, thresholded = stage_scores("linear", pq.read_table(tmp_path / "p.parquet"))
    np.testing.assert_array_equal(ranked, scores)
    assert thresholded
