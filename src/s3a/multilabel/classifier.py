"""The label text classifier ``W`` (spec 3, rule ``embed_label_set``): one unit text embedding per
label of a dataset's label set, from its readable prompt under a template set.

:func:`template_set` names the templates (``cdul``: the single "a photo of a {}." of the CDUL
reproduction, the default; ``imagenet7`` or any set of :mod:`s3a.vocab`); :func:`label_classifier`
encodes them (:func:`s3a.embed.text_classifier`); :func:`embed_label_set` is the rule's step and
:func:`read_classifier` the one reader of ``ml/label_classifier.parquet`` that every consumer uses
(it checks that ``label_index`` is ``0..C-1`` and returns the rows in that order). Shared by CDUL
(the pseudo-labels and the learners' start ``s0·W``) and the CLIP-Decoder (its label queries).

Cost: C x |templates| text encodings (NUS-WIDE 1,006 x 7: seconds on a GPU); ``W`` is ``C x D``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from s3a.io import embeddings_table, read_embeddings

__all__ = [
    "template_set",
    "label_classifier",
    "read_classifier",
    "embed_label_set",
]


def template_set(name: str) -> tuple[str, ...]:
    """Prompt templates of ``multilabel.templates``: ``cdul`` = the single ``"a photo of a {}."``
    (the CDUL reproduction's prompt, the default for parity) or any set of :data:`s3a.vocab.TEMPLATES`
    (``imagenet7`` recommended)."""
    from s3a.vocab import TEMPLATES

    if name == "cdul":
        return ("a photo of a {}.",)
    if name not in TEMPLATES:
        raise ValueError(f"unknown template set {name!r}; expected 'cdul' or one of {sorted(TEMPLATES)}")
    return TEMPLATES[name]


def label_classifier(
    model, tokenizer: Callable, prompts: Sequence[str], templates: str = "cdul", batch_size: int = 1024
) -> np.ndarray:
    """``W``: ``(C, D)`` unit rows for the label set's ``prompt`` column (spec 3), through
    :func:`s3a.embed.text_classifier` (C x templates prompts, ``batch_size`` prompts per forward;
    trivial cost for C <= 1,006)."""
    from s3a.embed import text_classifier

    return text_classifier(model, tokenizer, list(prompts), template_set(templates), batch_size)


def read_classifier(path: str | Path) -> np.ndarray:
    """``W`` ``(C, D)`` float32 from a ``label_classifier.parquet`` file, rows in ``label_index``
    order.

    Raises:
        ValueError: the ``label_index`` values are not ``0..C-1``.
    """
    ids, w = read_embeddings(path, id_column="label_index")
    order = np.argsort(ids, kind="stable")
    if not np.array_equal(ids[order], np.arange(len(ids))):
        raise ValueError(f"{path}: label_index must be 0..C-1, got {np.sort(ids)[:10].tolist()}...")
    return w[order]


def embed_label_set(
    clip, label_set: pd.DataFrame, templates: str = "cdul", batch_size: int = 1024
) -> pa.Table:
    """Rule ``embed_label_set``: ``label_index, embedding`` (unit ``W`` rows) of the label set's
    ``prompt`` column through :func:`s3a.multilabel.classifier.label_classifier` on ``clip`` (a
    :class:`s3a.models.LoadedClip`).

    Raises:
        ValueError: the ``label_index`` values are not ``0..C-1``, or an unknown template set.
    """
    rows = label_set.sort_values("label_index")
    index = rows["label_index"].to_numpy(dtype=np.int64)
    if not np.array_equal(index, np.arange(len(index))):
        raise ValueError(f"label_set.label_index must be 0..C-1, got {index[:10].tolist()}...")
    w = label_classifier(clip.model, clip.tokenizer, rows["prompt"].tolist(), templates, batch_size)
    return embeddings_table(index, w, id_column="label_index")
