"""One-line configuration errors and the dataset-parameter checks made before any job runs."""

from __future__ import annotations

import json
import re

import pandas as pd
import yaml

from s3a.configcheck import (
    add_folder_dataset,
    config_problem,
    dataset_problems,
    folder_name,
    missing_roots,
    yaml_problem,
)
from tests.conftest import REPO

SCHEMA = json.loads((REPO / "config" / "config.schema.json").read_text())


def _demo():
    return yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


def test_valid_configs_have_no_problem():
    assert config_problem(_demo(), SCHEMA, "demo.yaml") is None
    full = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config_problem(full, SCHEMA, "config.yaml") is None


def test_misspelt_key_names_file_path_allowed_keys_and_suggestion():
    config = _demo()
    config["discover"]["kmeans"]["n_inti"] = config["discover"]["kmeans"].pop("n_init")
    line = config_problem(config, SCHEMA, "config/demo.yaml")
    assert line.startswith("config/demo.yaml: discover.kmeans: unknown key 'n_inti'; allowed keys: ")
    assert line.endswith("did you mean 'n_init'?") and "\n" not in line


def test_bad_value_names_allowed_values_and_range():
    config = _demo()
    config["llm"]["backend"] = "wordnett"
    line = config_problem(config, SCHEMA, "x.yaml")
    assert line.startswith("x.yaml: llm.backend: 'wordnett' is not allowed; allowed values: ")
    assert line.endswith("did you mean 'wordnet'?")
    config = _demo()
    config["datasets"]["shapes"]["k"] = 1
    line = config_problem(config, SCHEMA, "x.yaml")
    assert line == "x.yaml: datasets.shapes.k: 1 is not allowed; allowed: integer >= 2 or 'auto'"


def test_dataset_params_are_checked_against_the_builder(tmp_path):
    datasets = {
        "a": {"kind": "imagefolder", "params": {"root": str(tmp_path), "test_fractoin": 0.2}},
        "b": {"kind": "caltech101", "params": {"root": str(tmp_path), "train_fraction": 1.5}},
        "c": {"kind": "imagenet1k", "params": {}},
        "d": {"kind": "folder", "params": {"root": str(tmp_path / "absent")}},
    }
    problems = dataset_problems(datasets, ["a", "b", "c", "d"])
    assert problems == [
        "datasets.a.params: unknown key 'test_fractoin' for kind 'imagefolder'; allowed keys: root, "
        "test_fraction, seed; did you mean 'test_fraction'?",
        "datasets.b.params.train_fraction: 1.5 is out of range [0, 1]",
        "datasets.c.params: kind 'imagenet1k' needs the key 'root'",
    ]
    assert missing_roots(datasets, ["a", "d"]) == [f"datasets.d.params.root: no folder {tmp_path / 'absent'}"]
    downloads = {"e": {"kind": "cifar100", "params": {"root": str(tmp_path / "x"), "download": True}}}
    assert missing_roots(downloads, ["e"]) == []


def test_invalid_yaml_names_file_line_and_column(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("datasets:\n  a: {kind: folder\n  b: 1\n")
    line = yaml_problem(path)
    assert line.startswith(f"{path}: line 3, column 4: ") and "\n" not in line
    path.write_text("datasets:\n  a: {kind: folder}\n")
    assert yaml_problem(path) is None


def test_folder_option_adds_one_unlabeled_dataset_run_alone(tmp_path):
    config = _demo()
    name = add_folder_dataset({**config, "folder": str(tmp_path / "My Photos 2024")}, tmp_path / "results")
    assert re.fullmatch(r"my_photos_2024_[0-9a-f]{6}", name)
    config["folder"] = str(tmp_path / "My Photos 2024")
    assert add_folder_dataset(config, tmp_path / "results") == name
    assert config["run"]["datasets"] == [name] and "shapes" in config["datasets"]
    assert config["datasets"][name] == {
        "kind": "folder",
        "params": {"root": str(tmp_path / "My Photos 2024")},
        "k": "auto",
        "k_search": {"lo": 2},
        "llm": {"on_failure": "wordnet"},
    }
    assert config_problem(config, SCHEMA, "x") is None
    clash = _demo()
    shapes = folder_name(tmp_path / "shapes")
    clash["datasets"][shapes] = {"kind": "generated"}  # a dataset of that name exists already
    clash["folder"] = str(tmp_path / "shapes")
    assert (
        add_folder_dataset(clash) == f"folder_{shapes}" and clash["datasets"][shapes]["kind"] == "generated"
    )


def test_two_folders_with_one_base_name_get_two_names(tmp_path):
    """~/2023/photos and ~/2024/photos never share results; the same folder always gets its name."""
    a, b = tmp_path / "2023" / "photos", tmp_path / "2024" / "photos"
    names = {folder_name(a), folder_name(b)}
    assert len(names) == 2 and all(re.fullmatch(r"photos_[0-9a-f]{6}", n) for n in names)
    assert (
        folder_name(a)
        == folder_name(str(a) + "/")
        == folder_name(tmp_path / "2023" / ".." / "2023" / "photos")
    )


def test_a_folder_run_under_its_plain_name_keeps_its_results(tmp_path):
    """A folder run before names had suffixes keeps results/<base>/; another folder of that base does not."""
    a, b = tmp_path / "2023" / "photos", tmp_path / "2024" / "photos"
    manifest = tmp_path / "results" / "photos" / "manifest.parquet"
    manifest.parent.mkdir(parents=True)
    pd.DataFrame({"path": [str(a / "x.jpg")]}).to_parquet(manifest)
    assert folder_name(a, tmp_path / "results") == "photos"
    assert folder_name(b, tmp_path / "results") == folder_name(b) != "photos"


def test_multilabel_dataset_params_are_checked_against_their_builder(tmp_path):
    datasets = {
        "voc": {"kind": "voc2012", "params": {"rot": str(tmp_path)}},
        "gen": {"kind": "generated_multilabel", "params": {"root": str(tmp_path / "new"), "n_train": 4}},
        "nus": {"kind": "nuswide", "params": {"root": str(tmp_path / "absent"), "label_space": "all"}},
    }
    problems = dataset_problems(datasets, ["voc", "gen", "nus"])
    assert problems == [
        "datasets.voc.params: unknown key 'rot' for kind 'voc2012'; allowed keys: root, difficult, "
        "prompt_style; did you mean 'root'?",
        "datasets.voc.params: kind 'voc2012' needs the key 'root'",
    ]
    # the generated set writes its own root; a benchmark's missing root is named
    assert missing_roots(datasets, ["gen", "nus"]) == [
        f"datasets.nus.params.root: no folder {tmp_path / 'absent'}"
    ]
