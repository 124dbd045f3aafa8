"""The CLIP-Decoder, open-vocabulary and summary adapters (``workflow/scripts/``, named as their rules)
run through ``main(smk)`` on tiny Parquet inputs, with a ``SimpleNamespace`` standing in for ``snakemake``
(the rules' input, params and output names)."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import unit
from test_multilabel_openvocab import DATA_NOUN, VOCAB_NAMES, VOCAB_WNIDS

from s3a.io import read_table, write_embeddings, write_table
from s3a.models import TINY_ARCH
from s3a.multilabel.aggregate import ViewScores, scores_table
from s3a.multilabel.classifier import label_classifier
from s3a.multilabel.data.registry import build_multilabel
from s3a.multilabel.data.tables import ImageRecord, assemble, read_predictions
from s3a.multilabel.decoder.tokens import load_tokens
from s3a.multilabel.metrics import EVAL_COLUMNS
from s3a.multilabel.views.tables import tiles_table

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"
TRAIN = {
    "seed": 0,
    "asl": {"gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05, "eps": 1e-8},
    "mldecoder": {"embed_dim": 16, "heads": 2, "ff_dim": 32, "dropout": 0.1, "query_chunk": 4, "epochs": 2,
                  "batch_size": 4, "lr": 1e-3, "weight_decay": 1e-4, "backbone": "frozen"},
}  # fmt: skip
PSEUDO = {"temperature": 100.0, "zeta": 0.0, "lam": 0.0, "local_reduce": "cdul"}


def run(script: str, tmp_path: Path, **parts) -> None:
    """``main`` of a script with a fake ``snakemake``: ``parts`` are input/output/params/wildcards."""
    smk = SimpleNamespace(log=[str(tmp_path / f"{script}.log")], threads=1, **parts)
    runpy.run_path(str(SCRIPTS / f"{script}.py"), run_name="adapter")["main"](smk)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_checkpoint, tiny_clip):
    """Generated multi-label images (8 train, 4 test, 64 px), their tables (labels 0-3 seen), the tiny
    model's label classifier and a CDUL pseudo table of the train split."""
    root = tmp_path_factory.mktemp("mlvocab")
    data = build_multilabel(
        "generated_multilabel", {"root": str(root / "img"), "n_train": 8, "n_test": 4, "canvas": 64}
    )
    label_set = data.label_set.assign(seen=data.label_set["label_index"] < 4)
    for name, table in (("manifest", data.manifest), ("labels", data.labels), ("label_set", label_set)):
        write_table(table, root / f"{name}.parquet")
    w = label_classifier(tiny_clip.model, tiny_clip.tokenizer, data.label_set["prompt"], "cdul")
    write_embeddings(np.arange(len(w)), w, root / "classifier.parquet", id_column="label_index")
    train = data.manifest[data.manifest.split == "train"].image_id.to_numpy()
    rng = np.random.default_rng(0)
    views = ViewScores(*[rng.dirichlet(np.ones(len(w)), len(train)).astype(np.float32) for _ in range(4)])
    write_table(scores_table(train, views), root / "pseudo.parquet")
    model = {"arch": TINY_ARCH, "pretrained": str(tiny_checkpoint)}
    return root, model, data


def test_patch_token_and_head_adapters(world, tmp_path):
    root, model, data = world
    for split in ("train", "test"):
        run(
            "embed_patch_tokens", tmp_path,
            input=SimpleNamespace(manifest=str(root / "manifest.parquet"), checkpoint=model["pretrained"]),
            params=SimpleNamespace(model=model, batch_size=4, decoder="pil"),
            wildcards=SimpleNamespace(split=split, mldataset="gen", model="tiny"),
            output=SimpleNamespace(tokens=str(tmp_path / f"{split}.npy"),
                                   ids=str(tmp_path / f"{split}_ids.parquet")),
        )  # fmt: skip
        ids, tokens = load_tokens(tmp_path / f"{split}.npy", tmp_path / f"{split}_ids.parquet")
        expected = data.manifest[data.manifest.split == split].image_id.tolist()
        assert ids.tolist() == expected and tokens.dtype == np.float16 and tokens.shape[0] == len(expected)
    tables = {
        n: str(root / f"{n}.parquet") for n in ("classifier", "pseudo", "manifest", "labels", "label_set")
    }
    for supervision, n_labels in (("pseudo", 6), ("gt_seen", 4)):
        out = tmp_path / supervision
        run(
            "train_mldecoder", tmp_path,
            input=SimpleNamespace(tokens=str(tmp_path / "train.npy"), ids=str(tmp_path / "train_ids.parquet"),
                                  **tables),
            params=SimpleNamespace(train=TRAIN, pseudo=PSEUDO, supervision=supervision,
                                   state=str(tmp_path / "state" / f"{supervision}.pt")),
            output=SimpleNamespace(model=str(out / "model.pt"), history=str(out / "history.parquet")),
            wildcards=SimpleNamespace(mldataset="gen", model="tiny"),
        )  # fmt: skip
        history = read_table(out / "history.parquet")
        assert history["epoch"].tolist() == [1, 2] and np.isfinite(history["loss"]).all()
        assert (tmp_path / "state" / f"{supervision}.pt").is_file()  # the resume file
        assert f"{n_labels} labels, 2 epochs" in (tmp_path / "train_mldecoder.log").read_text()
        run(
            "predict_mldecoder", tmp_path,
            input=SimpleNamespace(model=str(out / "model.pt"), tokens=str(tmp_path / "test.npy"),
                                  ids=str(tmp_path / "test_ids.parquet"), classifier=tables["classifier"]),
            params=SimpleNamespace(train=TRAIN),
            output=[str(out / "test.parquet")],
        )  # fmt: skip
        ids, scores = read_predictions(out / "test.parquet")
        assert ids.tolist() == data.manifest[data.manifest.split == "test"].image_id.tolist()
        assert scores.shape == (4, 6) and ((scores > 0) & (scores < 1)).all()  # every label, trained on any


@pytest.fixture
def pets(tmp_path):
    """6 test images of cat (vocabulary domestic_cat) and/or dog (dog) whose global view and 4 tiles
    point at their labels' names; the 6-name WordNet vocabulary, its classifier and data.noun."""
    rng = np.random.default_rng(0)
    d = 16
    names = np.array(VOCAB_NAMES)
    vocab = unit(rng.normal(size=(len(names), d))).astype(np.float32)
    objs = [(0,), (1,), (0, 1), (1,), (0,), (0, 1)]  # 0 cat, 1 dog
    nan = float("nan")
    records = [
        ImageRecord(f"/p/{i}.jpg", "test", tuple((c, False, nan) for c in o)) for i, o in enumerate(objs)
    ]
    data = assemble("pets", records, ["cat", "dog"], wnids=["n02121808", "n02084071"])
    rows = {0: 1, 1: 0}  # label -> vocabulary row (domestic_cat, dog)
    glob = unit(np.stack([vocab[[rows[c] for c in o]].sum(0) for o in objs]) + 0.05 * rng.normal(size=(6, d)))
    tiles = np.stack([vocab[[rows[o[j % len(o)]] for j in range(4)]] for o in objs])
    write_embeddings(np.arange(6), glob, tmp_path / "embed.parquet")
    write_table(tiles_table(np.arange(6), np.zeros((6, 4, 4)), tiles), tmp_path / "tiles.parquet")
    write_embeddings(np.arange(6), vocab, tmp_path / "vocab_classifier.parquet", id_column="vocab_index")
    vocabulary = pd.DataFrame(
        {"vocab_index": np.arange(6), "name": names, "synset_ids": [[w] for w in VOCAB_WNIDS]}
    )
    write_table(vocabulary, tmp_path / "vocabulary.parquet")
    for name, table in (("manifest", data.manifest), ("labels", data.labels), ("label_set", data.label_set)):
        write_table(table, tmp_path / f"{name}.parquet")
    (tmp_path / "wn").mkdir()
    (tmp_path / "wn" / "data.noun").write_text(DATA_NOUN)
    return tmp_path


def test_openvocab_and_summary_adapters(pets):
    p = {name: str(pets / f"{name}.parquet") for name in
         ("embed", "tiles", "vocab_classifier", "vocabulary", "manifest", "labels", "label_set")}  # fmt: skip
    ov = {"enabled": True, "topk_per_view": 3, "temperature": 100.0, "discovery": "frequency",
          "n_labels": 2, "views": "tiles", "max_points": None, "hierarchy": True,
          "wordnet_dir": str(pets / "wn")}  # fmt: skip
    run(
        "openvocab_scores", pets,
        input=SimpleNamespace(embeddings=p["embed"], tiles=p["tiles"], vocabulary=p["vocab_classifier"]),
        params=SimpleNamespace(openvocab=ov),
        output=[str(pets / "views.parquet")],
    )  # fmt: skip
    views = read_table(pets / "views.parquet")
    assert len(views) == 6 * 5 * 3 and set(views["view"]) == {-1, 0, 1, 2, 3}
    for discovery in ("cluster_vote", "frequency"):
        run(
            "openvocab_labels", pets,
            input=SimpleNamespace(views=str(pets / "views.parquet"), embeddings=p["embed"], tiles=p["tiles"],
                                  vocabulary=p["vocab_classifier"], label_set=p["label_set"]),
            # n_labels null: as many names as the dataset's labels (cat, dog)
            params=SimpleNamespace(openvocab={**ov, "discovery": discovery, "n_labels": None}, pseudo=PSEUDO,
                                   kmeans={"n_init": 2, "seed": 0, "backend": "torch", "device": "cpu"},
                                   vote={"n_iter": 2}),
            output=SimpleNamespace(scores=str(pets / "scores.parquet"),
                                   discovered=str(pets / "found.parquet")),
        )  # fmt: skip
        # cat and dog are the two names the views point at, by either discovery
        assert sorted(read_table(pets / "found.parquet")["vocab_index"]) == [0, 1], discovery
    run(
        "evaluate_openvocab", pets,
        input=SimpleNamespace(scores=str(pets / "scores.parquet"), discovered=str(pets / "found.parquet"),
                              labels=p["labels"], label_set=p["label_set"], manifest=p["manifest"],
                              vocabulary=p["vocabulary"]),
        params=SimpleNamespace(openvocab=ov),
        wildcards=SimpleNamespace(mldataset="pets", model="tiny"),
        output=SimpleNamespace(exact=str(pets / "ov_exact.parquet"), hier=str(pets / "ov_hier.parquet")),
    )  # fmt: skip
    exact, hier = read_table(pets / "ov_exact.parquet"), read_table(pets / "ov_hier.parquet")
    for rows, stage in ((exact, "ov_exact"), (hier, "ov_hier")):
        row = rows.iloc[0]
        assert (row.dataset, row.model, row.stage, row.split) == ("pets", "tiny", stage, "test")
        assert row["map"] == 100.0 and row.n_images == 6 and row.discovery_recall == 100.0
    run(
        "summarize_multilabel", pets,
        input=[str(pets / "ov_exact.parquet"), str(pets / "ov_hier.parquet")],
        output=SimpleNamespace(
            parquet=str(pets / "summary_multilabel.parquet"),
            md=str(pets / "summary.md"),
            html=str(pets / "multilabel.html"),
        ),
        params=SimpleNamespace(random_weights=["tiny"]),
    )  # fmt: skip
    summary = read_table(pets / "summary_multilabel.parquet")
    assert summary["stage"].tolist() == ["ov_exact", "ov_hier"] and list(summary.columns[:21]) == list(
        EVAL_COLUMNS
    )
    html = (pets / "multilabel.html").read_text()
    assert html.count("<td>pets</td>") == 2 and "<td>100.0</td>" in html
    # a page like the gallery's: the legend of stages and metrics, why n/a, the random-weights note
    assert html.startswith("<!DOCTYPE html>") and '<section class="card">' in html
    assert "<b>zs_final</b>" in html and "<b>mAP</b>" in html and "n/a: the metric is not defined" in html
    assert "Model tiny has random weights" in html
    md = (pets / "summary.md").read_text()
    assert md.count("| pets ") == 2 and "100.0" in md
    assert "multi-label summary of 2 metric rows" in (pets / "summarize_multilabel.log").read_text()
