"""The config models are the one source: generated files, config.yaml, README and step parameters follow."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from s3a import config as cfg

REPO = Path(__file__).resolve().parents[2]
#: blocks whose config.yaml values are the paper's, i.e. the model defaults, key for key
DEFAULT_BLOCKS = ["splits", "vocabulary", "embed", "evaluate", "names", "compute", "discover", "llm", "train",
                  "multilabel"]  # fmt: skip
REGENERATE = "regenerate: `python -m s3a.config schema > config/config.schema.json` (and readme)"


def drift(schema: dict, readme: str, config: dict) -> list[str]:
    """What differs between the models and the checked-in schema, config/README.md and config.yaml."""
    problems = []
    if schema != cfg.json_schema():
        problems.append("config/config.schema.json")
    if readme != cfg.readme():
        problems.append("config/README.md")
    defaults = cfg.Config(datasets=config["datasets"], models=config["models"]).model_dump()
    problems += [f"config.yaml {block}" for block in DEFAULT_BLOCKS if config.get(block) != defaults[block]]
    return problems


def checked_in() -> tuple[dict, str, dict]:
    return (
        json.loads((REPO / "config" / "config.schema.json").read_text()),
        (REPO / "config" / "README.md").read_text(),
        yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
    )


def test_no_drift_between_models_schema_readme_and_config_yaml():
    """config.yaml reproduces the paper: each block has every key, at the model's default."""
    assert drift(*checked_in()) == [], REGENERATE


def test_a_default_changed_in_one_place_fails():
    """A default changed in the schema, the README or config.yaml alone (or in the models alone: the
    generated files then differ from the checked-in ones) is drift."""
    schema, readme, config = checked_in()
    config["train"]["num_workers"] = 4
    assert drift(schema, readme, config) == ["config.yaml train"]
    schema, readme, config = checked_in()
    schema["$defs"]["Train"]["properties"]["num_workers"]["default"] = 4
    assert drift(schema, readme, config) == ["config/config.schema.json"]
    schema, readme, config = checked_in()
    row = "| `num_workers` | integer >= 0 | `8` |"
    assert row in readme
    assert drift(schema, readme.replace(row, row.replace("`8`", "`4`")), config) == ["config/README.md"]
    del config["llm"]["backoff_s"]  # a key missing from config.yaml
    assert drift(schema, readme, config) == ["config.yaml llm"]


def test_schema_has_one_def_per_block_referenced_not_repeated():
    schema = cfg.json_schema()
    assert set(schema["$defs"]) == {b.__name__ for b in cfg.BLOCKS if b is not cfg.Config}
    text = json.dumps(schema)
    # the train block is described once; the dataset entry and the top level refer to it
    assert text.count('"ema_warmup_iters"') == 1
    assert schema["$defs"]["DatasetEntry"]["properties"]["train"]["$ref"] == "#/$defs/Train"
    assert schema["properties"]["train"]["$ref"] == "#/$defs/Train"


def _like(values: dict, shape: dict) -> dict:
    """``values`` restricted to the keys of ``shape``, recursively (a step's run-time knobs dropped)."""
    return {k: _like(values[k], v) if isinstance(v, dict) else values[k] for k, v in shape.items()}


def test_step_parameters_take_their_defaults_from_the_models():
    from s3a.discover.cluster import KMeansParams
    from s3a.discover.describe import DescribeParams
    from s3a.discover.kestimate import KSearchParams
    from s3a.discover.realign import RealignParams
    from s3a.discover.vote import VoteParams
    from s3a.embed import EmbedParams
    from s3a.gallery import GalleryParams
    from s3a.models import ModelSpec
    from s3a.train.loop import TrainParams

    pairs = [
        (KMeansParams, cfg.KMeans()),
        (KSearchParams, cfg.KSearch()),
        (VoteParams, cfg.Vote()),
        (RealignParams, cfg.Realign()),
        (DescribeParams, cfg.LLM()),
        (EmbedParams, cfg.Embed()),
        (GalleryParams, cfg.Gallery()),
        (TrainParams, cfg.Train()),
    ]
    for params, block in pairs:
        assert isinstance(params(), type(block))
        assert _like(params().model_dump(), block.model_dump()) == block.model_dump(), params.__name__
    assert TrainParams().decoder == cfg.Embed().decoder
    assert RealignParams().templates == cfg.DatasetEntry.model_fields["description_templates"].default
    # ModelSpec stays a dataclass (positional use); its fields and defaults are the model entry's
    spec = {f.name: f.default for f in dataclasses.fields(ModelSpec)}
    entry = {name: f.default for name, f in cfg.ModelEntry.model_fields.items()}
    assert spec == {**entry, "arch": dataclasses.MISSING}


def test_readme_key_list_names_only_keys_of_the_models():
    """Every `block.key` path the README's Configuration section names exists in the models."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 5)]
    blocks = {name for name, f in cfg.Config.model_fields.items()}
    for top in blocks:
        assert f"`{top}" in section, f"README's Configuration section does not name `{top}`"
    for path in set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", section)):
        node: type[cfg.Block] = cfg.Config
        parts = path.split(".")
        if parts[0] not in blocks:
            continue
        for part in parts:
            assert part in node.model_fields, f"README names `{path}`, which is not a config key"
            annotation = node.model_fields[part].annotation
            node = annotation if isinstance(annotation, type) and issubclass(annotation, cfg.Block) else None
            if node is None:
                break


def test_resolved_fills_defaults_and_keeps_dataset_overrides_partial():
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["datasets"]["shapes"]["train"] = {"epochs": 5}
    full = cfg.resolved(config)
    assert full["train"]["num_workers"] == 0 and full["train"]["seed"] == cfg.Train().seed
    assert full["datasets"]["shapes"]["train"] == {"epochs": 5}  # not filled: it overrides `train`
    assert full["discover"]["k_search"]["kmeans"] == {
        **cfg.KMeans().model_dump(),
        "n_init": 3,
        "max_iter": 100,
    }
    assert full["names"]["gallery"] == cfg.Gallery().model_dump()


def test_model_errors_name_the_key():
    with pytest.raises(ValueError, match="repeats"):
        cfg.LLM(repeats=True)
    with pytest.raises(ValueError, match="kind"):
        cfg.DatasetEntry(kind="imagenet2k")


def test_dataset_kinds_are_the_registry():
    from s3a.data import DATASETS
    from s3a.multilabel.data.registry import BUILDERS

    assert tuple(DATASETS) == cfg.S3A_KINDS
    assert tuple(BUILDERS) == cfg.MULTILABEL_KINDS
    assert cfg.DATASET_KINDS == cfg.S3A_KINDS + cfg.MULTILABEL_KINDS


def test_setting_zsl_only_for_multilabel_kinds():
    assert cfg.DatasetEntry(kind="nuswide", setting="zsl").setting == "zsl"
    with pytest.raises(ValueError, match="multi-label kinds"):
        cfg.DatasetEntry(kind="cifar100", setting="zsl")
    with pytest.raises(ValueError, match="needs setting zsl"):
        cfg.DatasetEntry(kind="voc2012", supervision="gt_seen")
    assert cfg.DatasetEntry(kind="nuswide", setting="zsl", supervision="gt_seen").supervision == "gt_seen"


def _dataclass_defaults(cls) -> dict:
    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(cls)
    }


def _shared(block, defaults: dict, rename: dict | None = None) -> tuple[dict, dict]:
    """(model values, dataclass values) of the keys both have (``rename``: model key -> dataclass key)."""
    rename = rename or {}
    values = {rename.get(k, k): v for k, v in block.model_dump().items()}
    keys = sorted(set(values) & set(defaults))
    assert keys, type(block).__name__
    lists = (list, tuple)
    return (
        {k: list(values[k]) if isinstance(values[k], lists) else values[k] for k in keys},
        {k: list(defaults[k]) if isinstance(defaults[k], lists) else defaults[k] for k in keys},
    )


def test_multilabel_parameters_take_their_defaults_from_the_models():
    """The library's multi-label dataclasses and the config blocks agree key for key."""
    from s3a.config import multilabel as ml
    from s3a.multilabel.aggregate import PseudoParams
    from s3a.multilabel.cdul.align import LabelUpdateParams
    from s3a.multilabel.cdul.linear import LinearParams
    from s3a.multilabel.decoder.head import MLDecoderParams
    from s3a.multilabel.decoder.train import HeadTrainParams
    from s3a.multilabel.imagetrain.network import ImageTrainParams
    from s3a.multilabel.losses import AslParams
    from s3a.multilabel.metrics import EvalParams
    from s3a.multilabel.views.tiles import TileParams

    decoder = ml.MLDecoderLearner()
    pairs = [
        (ml.Tiles(), TileParams),
        (ml.Pseudo(), PseudoParams),
        (ml.LabelUpdate(), LabelUpdateParams),
        (ml.Asl(), AslParams),
        (ml.MultiLabelEvaluate(), EvalParams),
        (ml.LinearLearner(), LinearParams),
        (decoder, MLDecoderParams),
        (decoder, HeadTrainParams),
    ]
    for block, params in pairs:
        ours, theirs = _shared(block, _dataclass_defaults(params))
        assert ours == theirs, params.__name__
    image = _dataclass_defaults(ImageTrainParams)
    ours, theirs = _shared(ml.FinetuneLearner(), image)
    assert ours == theirs
    assert ml.FinetuneLearner().label_every == image["label_update"].every
    assert (decoder.backbone, decoder.backbone_lr) == (image["backbone"], image["backbone_lr"])
    assert ml.MultiLabelTrain().seed == image["seed"] == _dataclass_defaults(LinearParams)["seed"]


@pytest.mark.slow
def test_discovery_imports_neither_torchvision_nor_pil():
    import subprocess
    import sys

    code = (
        "import sys, s3a.discover.vote, s3a.discover.realign, s3a.discover.kestimate, s3a.discover.describe; "
        "print(sorted(m for m in ('torchvision', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_command_line_text_is_typed_as_the_models_say():
    """`--config train={'epochs': 3}` hands '3' over; numbers and booleans become numbers and booleans."""
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["train"] = {"epochs": "3", "lr": "1.0e-5"}
    config["multilabel"] = {"openvocab": {"enabled": "true", "wordnet_dir": "2024"}}
    config["datasets"]["shapes"]["params"]["seed"] = "7"  # builder params stay as given
    config["datasets"]["shapes"]["k"] = "12"
    out = cfg.typed(config)
    assert out["train"] == {"epochs": 3, "lr": 1e-5}  # nothing added
    assert out["multilabel"] == {"openvocab": {"enabled": True, "wordnet_dir": "2024"}}
    assert out["datasets"]["shapes"]["k"] == 12 and out["datasets"]["shapes"]["params"]["seed"] == "7"
    assert set(out) == set(config)
    config["train"]["epochs"] = "three"  # rejected by the models: unchanged, for the schema to name
    assert cfg.typed(config)["train"]["epochs"] == "three"


def test_null_text_of_a_field_that_may_be_null_is_null():
    """`--config "evaluate={'soft_model': null}"` hands 'null' over: a field that may be null reads it
    (or 'None', '~') as null, so the soft metric is off instead of a hub model named 'null' being
    looked for; the text of a field that may not be null stays text, for the schema to name."""
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    for text in ("null", "None", "~"):
        config["evaluate"] = {"soft_model": text}
        config["models"]["tiny"]["quick_gelu"] = text
        out = cfg.typed(config)
        assert out["evaluate"] == {"soft_model": None} and out["models"]["tiny"]["quick_gelu"] is None
    assert cfg.Evaluate(soft_model="nullable-model").soft_model == "nullable-model"
    config["train"] = {"epochs": "null"}  # an integer field: rejected, unchanged
    assert cfg.typed(config)["train"]["epochs"] == "null"
