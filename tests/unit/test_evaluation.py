"""One stage's metric rows (s3a.evaluation) and the adapter workflow/scripts/evaluate.py."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from s3a.evaluation import evaluate_stage
from s3a.io import read_table, write_table

SCRIPTS = Path(__file__).resolve().parents[2] / "workflow" / "scripts"
LABELS = {"dataset": "pets", "model": "tiny", "stage": "structural"}


def world():
    """6 train images (3 cat, 3 dog; image 5 unreadable, no prediction) and 2 test images."""
    manifest = pd.DataFrame(
        {
            "image_id": np.arange(8),
            "split": ["train"] * 6 + ["test"] * 2,
            "class_index": [0, 0, 0, 1, 1, 1, 0, 1],
            "class_name": ["cat"] * 3 + ["dog"] * 3 + ["cat", "dog"],
            "wnid": [None] * 8,
        }
    )
    vocabulary = pd.DataFrame(
        {"vocab_index": [0, 1, 2], "name": ["cat", "dog", "fox"], "synset_ids": [["n1"], ["n2"], ["n3"]]}
    )
    train = pd.DataFrame({"image_id": [0, 1, 2, 3, 4], "vocab_index": [0, 0, 2, 1, 1]})
    partition = pd.DataFrame({"image_id": np.arange(6), "cluster": [0, 0, 0, 1, 1, 1]})
    # cluster 0 (cats) holds cat among its candidates, cluster 1 (dogs) does not
    candidates = pd.DataFrame({"cluster": [0, 0, 1], "rank": [0, 1, 0], "vocab_index": [2, 0, 2]})
    descriptions = pd.DataFrame({"cluster": [0], "name": ["cat"], "phrase": ["whiskers"], "count": [2]})
    descriptions.attrs["wordnet_fallback_clusters"] = [1]
    return manifest, vocabulary, train, (partition, candidates, descriptions)


def test_evaluate_stage_labels_counts_and_discovery():
    manifest, vocabulary, train, discovery = world()
    rows = evaluate_stage(manifest, vocabulary, {"train": train}, "vocab_index", LABELS, discovery=discovery)
    assert list(rows.columns[:6]) == ["dataset", "model", "stage", "split", "label_set", "n"]
    row = rows.iloc[0]
    assert (row.dataset, row.model, row.stage, row.split) == ("pets", "tiny", "structural", "train")
    assert row.n == 5 and row.skipped == 1  # image 5 could not be read
    assert row.top1 == 80.0 and np.isnan(row.soft_acc)  # no scorer
    assert row.candidate_recall == 0.5 and row.llm_fallback_clusters == 1


def test_evaluate_stage_without_discovery_has_no_discovery_columns():
    manifest, vocabulary, _, _ = world()
    test = pd.DataFrame({"image_id": [6, 7], "pred_vocab_index": [0, 0], "pred_class_index": [0, 1]})
    rows = evaluate_stage(manifest, vocabulary, {"test": test}, "pred_vocab_index", LABELS)
    assert rows.label_set.tolist() == ["vocabulary", "class_names"]
    assert rows.top1.tolist() == [50.0, 100.0] and (rows.skipped == 0).all()
    assert "candidate_recall" not in rows and "llm_fallback_clusters" not in rows


def test_evaluate_adapter(tmp_path):
    manifest, vocabulary, train, discovery = world()
    paths = {}
    for name, table in [("manifest", manifest), ("vocabulary", vocabulary), ("train", train)] + list(
        zip(("partition", "candidates", "descriptions"), discovery, strict=True)
    ):
        paths[name] = str(tmp_path / f"{name}.parquet")
        write_table(table, paths[name])
    smk = SimpleNamespace(
        input=SimpleNamespace(
            manifest=paths["manifest"],
            vocabulary=paths["vocabulary"],
            predictions=[paths["train"]],
            discovery=[paths["partition"], paths["candidates"], paths["descriptions"]],
        ),
        output=[str(tmp_path / "structural.parquet")],
        params=SimpleNamespace(stage={"column": "vocab_index", "splits": ["train"]}, soft_model=None),
        wildcards=SimpleNamespace(**LABELS),
        log=[str(tmp_path / "evaluate.log")],
    )
    runpy.run_path(str(SCRIPTS / "evaluate.py"), run_name="adapter")["main"](smk)
    rows = read_table(tmp_path / "structural.parquet")
    assert rows.stage.tolist() == ["structural"] and rows.skipped.tolist() == [1]
    assert rows.candidate_recall.tolist() == [0.5] and rows.llm_fallback_clusters.tolist() == [1]
    assert "metrics:" in (tmp_path / "evaluate.log").read_text()
