"""`make clean-demo` removes what the demo made and keeps every other run's results."""

from __future__ import annotations

import pandas as pd
import yaml

from s3a.cleandemo import demo_paths, main
from tests.conftest import REPO

DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


def _touch(root, *paths):
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_text("x")


def test_clean_demo_keeps_a_users_folder_results(tmp_path, monkeypatch):
    demo = [
        "results/shapes/manifest.parquet",
        "results/shapes/tiny/names.csv",
        "results/shapes_ml/tiny/tiles/train.parquet",
        "results/vocabulary/tiny/classifier.parquet",
        "resources/demo/shapes/a/0.jpg",
        "resources/models/random-s3a-tiny-seed0.pt",
        "resources/train/shapes/tiny/state.pt",
        "resources/ml_train/shapes_ml/tiny/linear/state.pt",
        "logs/embed_images/shapes/tiny-train.log",
        "logs/prepare_manifest/shapes.log",
        "logs/prepare_multilabel/shapes_ml.log",
        "logs/create_random_model/s3a-tiny-seed0.log",
        "logs/embed_vocabulary/tiny.log",
        "benchmarks/prepare_manifest/shapes.tsv",
        "benchmarks/self_train/shapes/tiny.tsv",
    ]
    users = [
        "results/photos_1a2b3c/vit_b16/names.csv",
        "results/photos_1a2b3c/manifest.parquet",
        "results/vocabulary/vocabulary.parquet",
        "results/vocabulary/vit_b16/classifier.parquet",
        "resources/train/photos_1a2b3c/vit_b16/state.pt",
        "resources/llm_cache.sqlite",
        "logs/embed_images/photos_1a2b3c/vit_b16-train.log",
        "logs/prepare_manifest/photos_1a2b3c.log",
        "logs/prepare_manifest/shapes_old.log",
        "benchmarks/prepare_manifest/photos_1a2b3c.tsv",
        ".snakemake/metadata/x",
        "report.zip",
    ]
    _touch(tmp_path, *demo, *users)
    pd.DataFrame({"dataset": ["shapes"], "top1": [0.1]}).to_parquet(tmp_path / "results/summary.parquet")
    _touch(tmp_path, "results/summary.md")
    # a benchmark's summary is not the demo's
    pd.DataFrame({"dataset": ["voc2007", "shapes_ml"]}).to_parquet(
        tmp_path / "results/summary_multilabel.parquet"
    )
    (tmp_path / "config").mkdir()
    (tmp_path / "config/demo.yaml").write_text((REPO / "config/demo.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["config/demo.yaml"]) == 0
    left = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert left == set(users) | {"config/demo.yaml", "results/summary_multilabel.parquet"}


def test_a_demo_model_used_by_another_folder_is_kept(tmp_path):
    """`--configfile config/demo.yaml --config folder=...` runs a folder with the demo's model: kept."""
    _touch(tmp_path, "results/photos_1a2b3c/tiny/names.csv", "results/vocabulary/tiny/classifier.parquet")
    _touch(tmp_path, "resources/models/random-s3a-tiny-seed0.pt", "results/shapes/manifest.parquet")
    assert demo_paths(DEMO, tmp_path) == [tmp_path / "results/shapes"]
