"""The files generated from the config models: the JSON Schema, config/README.md, and the config with
its defaults filled in (:func:`resolved`, what the workflow runs with)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

from s3a.config.models import (
    LLM,
    OVERRIDES,
    Block,
    Compute,
    Config,
    DatasetEntry,
    Discover,
    Embed,
    Evaluate,
    Gallery,
    KMeans,
    KSearch,
    ModelEntry,
    Names,
    Realign,
    Run,
    Tags,
    Train,
    Vocabulary,
    Vote,
)  # fmt: skip
from s3a.config.multilabel import (
    Asl,
    FinetuneLearner,
    LabelUpdate,
    LinearLearner,
    MLDecoderLearner,
    MultiLabel,
    MultiLabelEvaluate,
    MultiLabelTrain,
    OpenVocab,
    Pseudo,
    Tiles,
)

__all__ = ["BLOCKS", "json_schema", "readme", "resolved", "typed"]

#: every block, in the order config/README.md lists them
BLOCKS: tuple[type[Block], ...] = (
    Config, DatasetEntry, ModelEntry, Run, Vocabulary, Embed, Evaluate, Names, Gallery, Tags, Compute,
    Discover, KMeans, KSearch, Vote, Realign, LLM, Train, MultiLabel, Tiles, Pseudo, MultiLabelTrain,
    LabelUpdate, Asl, LinearLearner, FinetuneLearner, MLDecoderLearner, MultiLabelEvaluate, OpenVocab,
)  # fmt: skip
_SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"


def _clean(node: Any) -> Any:
    """Pydantic's schema as the project writes it: no titles, and ``X | null`` as one type list (so an
    error reads ``integer >= 3``, not two alternatives)."""
    if isinstance(node, list):
        return [_clean(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _clean(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = next(o for o in options if o != {"type": "null"})
        if isinstance(other.get("type"), str):
            rest = {k: v for k, v in out.items() if k != "anyOf"}
            out = {**other, "type": [other["type"], "null"], **rest}
    return out


def json_schema() -> dict[str, Any]:
    """``config/config.schema.json``: JSON Schema 2020-12 of :class:`Config`, one ``$defs`` entry per block.

    A block-valued key whose default is the block's own defaults shows ``"default": {}`` (every key
    of it takes its own default); the keys of a dataset entry that override a top-level block too.
    """
    schema = _clean(Config.model_json_schema(ref_template="#/$defs/{model}"))
    for cls in BLOCKS:
        props = (schema if cls is Config else schema["$defs"][cls.__name__])["properties"]
        for name, field in cls.model_fields.items():
            if field.description and "description" not in props[name]:  # pydantic drops a docstring's copy
                props[name]["description"] = field.description
            if isinstance(field.default, Block) and field.default == type(field.default)():
                props[name]["default"] = {}
    return {"$schema": _SCHEMA_URL, "title": "S3A workflow configuration", **schema}


def _paths(cls: type[Block] = Config, prefix: str = "") -> Iterator[tuple[str, type[Block]]]:
    """(key path, block) of every block reachable from ``cls``: ``discover.k_search.kmeans``, ..."""
    for name, field in cls.model_fields.items():
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        if isinstance(annotation, type) and issubclass(annotation, Block):
            path = f"{prefix}{name}"
        elif args and isinstance(args[-1], type) and issubclass(args[-1], Block):  # dict[str, Block]
            path, annotation = f"{prefix}{name}.<name>", args[-1]
        else:
            continue
        yield path, annotation
        yield from _paths(annotation, path + ".")


def _type(prop: Mapping[str, Any]) -> str:
    if "$ref" in prop:
        return "block " + prop["$ref"].rsplit("/", 1)[-1]
    if "enum" in prop:
        return " / ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_type(option) for option in prop["anyOf"])
    if "const" in prop:
        return f"`{prop['const']}`"
    types = prop.get("type", "any")
    text = " or ".join(types) if isinstance(types, list) else types
    if prop.get("type") == "array" and "items" in prop:
        text = f"list of {_type(prop['items'])}"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    return " ".join([text, *(f"{m} {prop[k]}" for k, m in bounds.items() if k in prop)])


def readme() -> str:
    """``config/README.md``: one table per block (key, type, default, meaning), from :func:`json_schema`."""
    schema = json_schema()
    where: dict[str, list[str]] = {}
    for path, cls in _paths():
        where.setdefault(cls.__name__, []).append(f"`{path}`")
    lines = [
        "# Configuration",
        "",
        "Generated from the models in `src/s3a/config/models.py` by `python -m s3a.config readme` (a",
        "test keeps it, `config.schema.json` and `config.yaml` in step with them). `config/config.yaml`",
        "sets the paper's benchmarks; `config/demo.yaml` the embedded demo. A key left out takes its",
        "default; a block default `{}` means every key of the block takes its own default.",
    ]
    for cls in BLOCKS:
        node = schema if cls is Config else schema["$defs"][cls.__name__]
        title = "top level" if cls is Config else ", ".join(where[cls.__name__])
        lines += ["", f"## {cls.__name__}: {title}", "", node.get("description", ""), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        required = set(node.get("required", []))
        for key, prop in node["properties"].items():
            default = "required" if key in required else f"`{json.dumps(prop.get('default'))}`"
            meaning = prop.get("description", "").replace("|", "\\|")
            lines.append(f"| `{key}` | {_type(prop)} | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, Mapping):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(over)


def typed(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with its own values typed as the models type them, nothing added.

    Snakemake hands the nested values of ``--config key={...}`` over as text (``"3"``, ``"true"``);
    a key whose model field is a number or a boolean gets the number or boolean (a text field keeps
    its text, a dataset's builder ``params`` stay as given). A config the models reject comes back
    unchanged, so the schema check names its problem.
    """
    try:
        own = Config.model_validate(config).model_dump(exclude_unset=True)
    except ValueError:
        return dict(config)
    for name, entry in own.get("datasets", {}).items():
        entry["params"] = config["datasets"][name].get("params", {})
    return _merge(dict(config), own)


def resolved(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` validated by :class:`Config`, with every default filled in and its own values kept as
    given; a dataset's ``k_search``/``llm``/``train`` entries stay as given (the keys it overrides).

    Raises:
        pydantic.ValidationError: the config breaks a model (a ``ValueError``).
    """
    defaults = Config.model_validate(config).model_dump()
    for entry in defaults["datasets"].values():
        entry.update({key: {} for key in OVERRIDES})
    return _merge(defaults, config)
