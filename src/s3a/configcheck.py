"""One-line explanations of configuration errors, and the checks of dataset parameters.

:func:`config_problem` validates a config against the JSON Schema and, for the first error, says in
one line where it is (the files, the key path), what is wrong, what is allowed and, for a misspelt
key or value, the closest allowed one ("did you mean"). :func:`dataset_problems` checks each
dataset's ``params`` against its builder before any job runs (unknown or missing keys, fractions
out of range); :func:`missing_roots` lists the data roots that do not exist (a warning: ``snakemake
-n`` must work without data, and the job that needs the data stops with the layout it expects).
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import os
import re
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

__all__ = [
    "add_folder_dataset",
    "config_problem",
    "dataset_problems",
    "load_problems",
    "folder_name",
    "missing_roots",
    "yaml_problem",
]

#: JSON Schema bound keyword -> how a message writes it
BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


def _key(part: Any) -> str:
    """A key as a message writes it: as is, or quoted when it is empty or holds odd characters."""
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else repr(part)


def _key_path(path: Sequence[Any]) -> str:
    return ".".join(_key(p) for p in path) or "(top level)"


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _describe(schema: Mapping[str, Any]) -> str:
    """A short reading of a sub-schema: ``'auto'``, ``integer >= 2``, ``one of a, b``."""
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    text = str(schema.get("type", "value"))
    return " ".join([text, *(f"{m} {schema[k]}" for k, m in BOUNDS.items() if k in schema)])


def _explain(error: ValidationError) -> str:
    where = _key_path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        if unknown and allowed:
            return (
                f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}"
                f"{_did_you_mean(unknown[0], allowed)}"
            )
    if error.validator == "enum":
        allowed = [str(v) for v in error.validator_value]
        return (
            f"{where}: {error.instance!r} is not allowed; allowed values: {', '.join(allowed)}"
            f"{_did_you_mean(str(error.instance), allowed)}"
        )
    if error.validator in BOUNDS:
        allowed = f"{BOUNDS[error.validator]} {error.validator_value}"
        return f"{where}: {error.instance!r} is out of range; allowed: {allowed}"
    if error.validator in ("oneOf", "anyOf") and isinstance(error.validator_value, list):
        options = [_describe(option) for option in error.validator_value]
        return f"{where}: {error.instance!r} is not allowed; allowed: {' or '.join(options)}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    return f"{where}: {error.message}"


def config_problem(config: Mapping[str, Any], schema: Mapping[str, Any], source: str) -> str | None:
    """The first schema error of ``config`` as one line naming ``source``, or None when it is valid.

    After the schema, the config is checked by the models of :mod:`s3a.config` (which generate it).

    Args:
        config: the loaded configuration.
        schema: the JSON Schema (``config/config.schema.json``).
        source: where the config came from, e.g. ``"config/demo.yaml + --config"``.
    """
    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is not None and error.parent is not None and error.parent.validator in ("oneOf", "anyOf"):
        error = error.parent  # name every alternative, not the one that came closest
    if error is not None:
        return f"{source}: {_explain(error)}"
    from pydantic import ValidationError as ModelError

    from s3a.config import Config

    try:  # what the schema cannot say (the models the schema is generated from)
        Config.model_validate(config)
    except ModelError as exc:
        first = exc.errors()[0]
        return f"{source}: {_key_path(first['loc'])}: {first['msg']}"
    return None


def load_problems(
    config: MutableMapping[str, Any],
    schema: Mapping[str, Any],
    source: str,
    explicit: Mapping[str, Any] | None = None,
) -> list[str]:
    """Prepare a loaded config in place the way the workflow does, and list its problems (one line each).

    The steps of ``workflow/rules/common.smk`` before any job: ``folder=`` becomes a dataset
    (:func:`add_folder_dataset`), command-line text is typed (:func:`s3a.config.typed`), then the
    schema and models (:func:`config_problem`) and the selected datasets' parameters
    (:func:`dataset_problems`) are checked. Whatever a user writes gives either ``[]`` (the config can
    be resolved) or lines starting with ``source``, never an exception (property-tested).

    Args:
        explicit: what the user gave with ``--configfile`` and ``--config`` (not the workflow's
            default config file): an ``llm.on_failure`` there wins over the folder's default
            ``wordnet``.
    """
    from s3a.config import typed

    if not isinstance(config, MutableMapping):
        return [f"{source}: (top level): expected a mapping of keys to values, got {type(config).__name__}"]
    if config.get("folder") is not None:
        if not isinstance(config["folder"], str | int | float) or isinstance(config["folder"], bool):
            return [f"{source}: folder: expected the path of a folder of images, got {config['folder']!r}"]
        if isinstance(config["folder"], int):  # `--config folder=2024`: Snakemake typed the name
            config["folder"] = str(config["folder"])
        for block in ("datasets", "run"):  # the blocks the folder's entry goes into
            if not isinstance(config.get(block, {}), MutableMapping):
                return [config_problem(config, schema, source) or f"{source}: {block}: expected a mapping"]
        try:
            name = add_folder_dataset(config)
        except (OSError, ValueError) as exc:  # e.g. a NUL character, a path too long
            return [f"{source}: folder: {config['folder']!r} is not a usable path ({exc})"]
        given = (explicit or {}).get("llm")
        if isinstance(given, Mapping) and "on_failure" in given:  # the user's own setting wins
            config["datasets"][name].get("llm", {}).pop("on_failure", None)
    config.update(typed(config))
    if problem := config_problem(config, schema, source):
        return [problem]
    datasets = config["datasets"]
    names = [n for n in (config.get("run", {}).get("datasets") or datasets) if n in datasets]
    return [f"{source}: {p}" for p in dataset_problems(datasets, names)]


def dataset_problems(datasets: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """Problems of the dataset entries ``names`` that are visible without building anything.

    Per entry: parameters its builder does not take (with a "did you mean"), required ones that are
    missing, and ``*_fraction`` values outside ``[0, 1]``. One line per problem, starting with
    ``datasets.<name>.params``.
    """
    from s3a.data import DATASETS, builder_params
    from s3a.multilabel.data import registry as multilabel

    problems = []
    for name in names:
        entry = datasets[name]
        kind, where = entry.get("kind"), f"datasets.{name}.params"
        if kind in DATASETS:
            accepted = builder_params(kind)
        elif kind in multilabel.BUILDERS:
            accepted = multilabel.builder_params(kind)
        else:
            continue  # the schema check names unknown kinds
        params = dict(entry.get("params") or {})
        for key in sorted(set(params) - set(accepted)):
            problems.append(
                f"{where}: unknown key {key!r} for kind {kind!r}; allowed keys: {', '.join(accepted)}"
                f"{_did_you_mean(key, list(accepted))}"
            )
        for key, default in accepted.items():
            if default is inspect.Parameter.empty and key not in params:
                problems.append(f"{where}: kind {kind!r} needs the key {key!r}")
        for key, value in params.items():
            if key.endswith("_fraction") and isinstance(value, int | float) and not 0 <= value <= 1:
                problems.append(f"{where}.{key}: {value!r} is out of range [0, 1]")
    return problems


#: kinds whose builder writes its images into ``root`` (the generated sets; mosaic composes from ``source``)
WRITES_ROOT = ("generated", "generated_multilabel", "mosaic")


def missing_roots(datasets: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> list[str]:
    """``datasets.<name>.params.root: no folder <path>`` for every root that does not exist.

    Entries whose builder makes the root itself (``download: true``, the generated demo) are skipped.
    """
    lines = []
    for name in names:
        entry = datasets[name]
        params = dict(entry.get("params") or {})
        root = params.get("root")
        if entry.get("kind") in WRITES_ROOT or params.get("download") is True or not isinstance(root, str):
            continue
        path = os.path.abspath(os.path.expanduser(root))
        if not os.path.isdir(path):
            lines.append(f"datasets.{name}.params.root: no folder {path}")
    return lines


def yaml_problem(path: str | os.PathLike[str]) -> str | None:
    """``"<path>: line L, column C: <what>"`` when the file is not valid YAML, else None."""
    try:
        with open(path, encoding="utf-8") as f:
            yaml.safe_load(f)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return f"{os.fspath(path)}: {where}{exc.problem or exc.context}"
    except yaml.YAMLError as exc:
        return f"{os.fspath(path)}: {exc}"
    return None


def folder_name(root: str | os.PathLike[str], results: str | os.PathLike[str] = "results") -> str:
    """The dataset name of a photo folder: its base name plus a short stable suffix of its path.

    The base name is lower-cased with other characters than letters, digits and ``_`` turned into
    ``_``; the suffix is the first 6 hex digits of the SHA-1 of the folder's real path (links
    resolved), so ``~/2023/photos`` and ``~/2024/photos`` get different names and the same folder
    always gets the same one (``/home/me/My Photos`` -> ``my_photos_1a2b3c``). A folder already run
    under its plain base name (``results/<base>/manifest.parquet`` lists images of this folder) keeps
    that name, and so its results.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(root)))
    base = re.sub(r"[^a-z0-9_]+", "_", os.path.basename(path).lower()).strip("_") or "photos"
    if _manifest_root_is(os.path.join(os.fspath(results), base, "manifest.parquet"), path):
        return base
    suffix = hashlib.sha1(os.path.realpath(path).encode()).hexdigest()[:6]
    return f"{base}_{suffix}"


def _manifest_root_is(manifest: str, root: str) -> bool:
    """Whether the manifest at ``manifest`` exists and its first image lies under ``root``."""
    if not os.path.isfile(manifest):
        return False
    import pyarrow.parquet as pq

    try:
        batch = next(pq.ParquetFile(manifest).iter_batches(batch_size=1, columns=["path"]), None)
    except Exception:  # an unreadable manifest belongs to no one: take the suffixed name
        return False
    first = batch.column(0)[0].as_py() if batch is not None and batch.num_rows else None
    return isinstance(first, str) and os.path.commonpath([os.path.abspath(first), root]) == root


def add_folder_dataset(config: MutableMapping[str, Any], results: str | os.PathLike[str] = "results") -> str:
    """``--config folder=PATH``: add an unlabeled ``folder`` dataset and make it the only one run.

    The dataset is named by :func:`folder_name` (``folder_<name>`` when a different entry already
    has that name). Its entry: kind ``folder``, the absolute root, ``k: auto`` with the K search
    starting at 2 (a photo folder may hold few images and few classes), and ``llm.on_failure:
    wordnet``: a cluster the LLM server cannot describe is described by its WordNet definitions
    instead of stopping the run (the benchmarks keep ``fail``).

    Returns:
        the dataset name; ``config["datasets"]`` and ``config["run"]["datasets"]`` are updated.
    """
    root = os.path.abspath(os.path.expanduser(str(config["folder"])))
    name = folder_name(root, results)
    entry = {
        "kind": "folder",
        "params": {"root": root},
        "k": "auto",
        "k_search": {"lo": 2},
        "llm": {"on_failure": "wordnet"},
    }
    datasets = config.setdefault("datasets", {})
    if name in datasets and datasets[name] != entry:
        name = f"folder_{name}"
    datasets[name] = entry
    config.setdefault("run", {})["datasets"] = [name]
    return name
