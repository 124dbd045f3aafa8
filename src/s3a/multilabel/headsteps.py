"""Steps of the CLIP-Decoder rules on precomputed patch tokens (spec 7, 10; backbone frozen): one function
per rule, each a composition of the library (:mod:`.heads`, :mod:`.headtrain`, :mod:`.supervision`); the
adapters in ``workflow/scripts/`` (named as their rules) only read files and call these. The
open-vocabulary rules' steps are in :mod:`.vocabsteps`.

| rule | function |
|---|---|
| ``embed_patch_tokens`` | :func:`embed_patch_tokens` (:func:`load_tokens` reads them back) |
| ``train_mldecoder`` | :func:`train_mldecoder`, :func:`save_head_model` |
| ``predict_mldecoder`` | :func:`load_head_model`, :func:`predict_mldecoder`, :func:`predictions_table` |
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from s3a.io import atomic_path, write_table
from s3a.multilabel import learners
from s3a.multilabel.heads import CLIPDecoderHead, MLDecoderParams, encode_patch_tokens
from s3a.multilabel.headtrain import predict_head, train_head
from s3a.multilabel.pseudo import PseudoParams
from s3a.multilabel.supervision import SUPERVISIONS, gt_targets, pseudo_targets, zsl_split

__all__ = [
    "HEAD_MODEL_KIND",
    "TrainedHead",
    "embed_patch_tokens",
    "load_tokens",
    "train_mldecoder",
    "save_head_model",
    "load_head_model",
    "predict_mldecoder",
]

log = logging.getLogger(__name__)
#: ``kind`` of a token-trained head file (the image learners' ``model.pt`` holds a ``learner`` key)
HEAD_MODEL_KIND = "mldecoder_tokens"


# ------------------------------------------------------------------------------ patch tokens


def embed_patch_tokens(
    model: torch.nn.Module,
    transform,
    paths: Sequence[str],
    image_ids: np.ndarray,
    tokens_path: str | Path,
    ids_path: str | Path,
    params=None,
    chunk_images: int = 2048,
    device: torch.device | None = None,
) -> int:
    """Patch tokens of image files (:func:`~s3a.multilabel.heads.encode_patch_tokens`) streamed into
    a float16 ``(N', P, D)`` ``.npy`` at ``tokens_path`` and their ``image_id`` column at ``ids_path``
    (row r of the array is row r of the table); unreadable images are skipped. Both files are
    written atomically; returns N'.

    Memory: ``chunk_images`` images' tokens at a time (2,048 x 196 x 512 float16 = 0.4 GB, about
    twice that while a chunk is assembled), never the whole array: the array is a
    :func:`numpy.lib.format.open_memmap`. Disk (ViT-B/16, P 196, D 512): NUS-WIDE train 150k images
    30 GB, COCO 2014 train 82,783 images 16.6 GB (ViT-L/14: x2); when images fail, the kept rows
    are copied once to a file of the right size (twice the disk for a moment).

    Raises:
        ValueError: ``paths`` and ``image_ids`` differ in length, or no image could be read.
    """
    image_ids = np.asarray(image_ids, dtype=np.int64)
    if len(paths) != len(image_ids):
        raise ValueError(f"{len(paths)} paths but {len(image_ids)} image ids")
    n, out, filled, kept = len(paths), None, 0, []
    with atomic_path(tokens_path) as tmp:
        for s in range(0, n, chunk_images):
            index, tokens, _ = encode_patch_tokens(
                model, transform, list(paths[s : s + chunk_images]), params, device, np.float16
            )
            if not len(index):
                continue
            if out is None:
                out = np.lib.format.open_memmap(tmp, "w+", np.float16, (n, *tokens.shape[1:]))
            out[filled : filled + len(index)] = tokens
            filled += len(index)
            kept.append(index + s)
        if out is None:
            raise ValueError(f"none of the {n} images could be read: no patch tokens to write")
        out.flush()
        if filled < n:
            _shrink(out, tmp, filled)
        del out
    write_table(pd.DataFrame({"image_id": image_ids[np.concatenate(kept)]}), ids_path)
    log.info("patch tokens of %d of %d images, %s", filled, n, tokens_path)
    return filled


def _shrink(array: np.memmap, path: Path, rows: int, chunk: int = 4096) -> None:
    """Replace the ``.npy`` at ``path`` by its first ``rows`` rows, copied in chunks."""
    part = path.with_name(path.name + ".part")
    try:
        small = np.lib.format.open_memmap(part, "w+", array.dtype, (rows, *array.shape[1:]))
        for s in range(0, rows, chunk):
            small[s : s + chunk] = array[s : min(rows, s + chunk)]
        small.flush()
        del small
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def load_tokens(tokens_path: str | Path, ids_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(image_ids (N,) int64, tokens (N, P, D) read-only memmap)`` written by :func:`embed_patch_tokens`.

    Raises:
        ValueError: the two files disagree in length.
    """
    tokens = np.load(tokens_path, mmap_mode="r")
    ids = pq.read_table(ids_path, columns=["image_id"]).column("image_id").to_numpy().astype(np.int64)
    if tokens.ndim != 3 or len(tokens) != len(ids):
        raise ValueError(f"{tokens_path} {tokens.shape} does not match the {len(ids)} ids of {ids_path}")
    return ids, tokens


class _Rows:
    """Rows ``rows`` (sorted) of an array read only when indexed: a subset of a memmap without a copy,
    with the ``shape``/``dtype``/indexing :func:`train_head` and :func:`s3a.resume.fingerprint` use."""

    def __init__(self, array: np.ndarray, rows: np.ndarray) -> None:
        self.array, self.rows = array, np.asarray(rows, dtype=np.int64)
        self.shape, self.dtype = (len(self.rows), *array.shape[1:]), array.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self.array[self.rows[index]])


# ------------------------------------------------------------------------------- the head


@dataclass
class TrainedHead:
    """A CLIP-Decoder head trained on tokens: the head (CPU, eval mode), its settings, the training
    label columns (``label_index`` values: all labels for ``pseudo``, the seen ones for ``gt_seen``)
    and the per-epoch history (:class:`~s3a.multilabel.headtrain.HeadResult`'s)."""

    head: CLIPDecoderHead
    params: MLDecoderParams
    label_indices: np.ndarray
    history: pd.DataFrame


def train_mldecoder(
    token_ids: np.ndarray,
    tokens: np.ndarray,
    label_ids: np.ndarray,
    classifier: np.ndarray,
    train: Mapping,
    supervision: str = "pseudo",
    pseudo_table: pa.Table | None = None,
    pseudo: Mapping | None = None,
    manifest: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
    label_set: pd.DataFrame | None = None,
    state_path: str | None = None,
    device: str | None = None,
    progress: bool = False,
) -> TrainedHead:
    """Rule ``train_mldecoder``: :func:`~s3a.multilabel.headtrain.train_head` on the train split's tokens.

    Args:
        token_ids, tokens: the train split's ``(N,)`` ids and ``(N, P, D)`` tokens (a memmap is read
            by batch; a subset of its rows is never copied whole).
        label_ids, classifier: the label classifier, ``(C,)`` ``label_index`` and ``(C, D)`` rows.
        train: the resolved ``multilabel.train`` dict (``mldecoder``, ``asl``, ``seed``).
        supervision: ``pseudo`` (targets: :func:`~s3a.multilabel.supervision.pseudo_targets` of
            ``pseudo_table`` re-aggregated under ``pseudo``, text: every label) or ``gt_seen``
            (:func:`~s3a.multilabel.supervision.zsl_split` of ``manifest``/``labels``/``label_set``:
            the train images with a seen label, their seen-label ground truth, the seen rows of W).
        state_path: the resume file (``resources/``), see ``train_head``.
        device: ``None`` = ``cuda`` when present.

    Memory: the ``(n, C)`` targets (NUS-WIDE 150k x 925 float32: 0.55 GB), one batch of tokens.

    Raises:
        ValueError: unknown supervision, missing inputs, no train image with targets.
    """
    from s3a.device import pick_device

    if supervision not in SUPERVISIONS:
        raise ValueError(f"multilabel.train.supervision must be one of {SUPERVISIONS}, got {supervision!r}")
    order = np.argsort(label_ids)
    label_ids, classifier = np.asarray(label_ids)[order], np.asarray(classifier)[order]
    token_ids = np.asarray(token_ids, dtype=np.int64)
    if supervision == "pseudo":
        if pseudo_table is None:
            raise ValueError("supervision pseudo needs the train split's pseudo-label table")
        known = pseudo_table.column("image_id").to_numpy()
        rows = np.flatnonzero(np.isin(token_ids, known))
        targets = pseudo_targets(pseudo_table, token_ids[rows], PseudoParams(**(pseudo or {})))
        columns = label_ids
    else:
        if manifest is None or labels is None or label_set is None:
            raise ValueError("supervision gt_seen needs the manifest, labels and label_set tables")
        split = zsl_split(manifest, labels, label_set)
        rows = np.flatnonzero(np.isin(token_ids, split.train_ids))
        targets = gt_targets(labels, token_ids[rows], split.seen, len(label_set))
        columns = split.seen
    if not len(rows):
        raise ValueError(f"no train image with patch tokens has {supervision} targets")
    if len(rows) < len(token_ids):
        log.info("training on %d of the %d images with tokens", len(rows), len(token_ids))
    text = classifier[np.searchsorted(label_ids, columns)]
    fit, head_params, asl = learners.head_params(train, device=str(pick_device(device)))
    subset = tokens if len(rows) == len(token_ids) else _Rows(tokens, rows)
    result = train_head(subset, targets, text, fit, head_params, asl, progress, state_path)
    return TrainedHead(result.head, head_params, np.asarray(columns, np.int64), result.history)


def save_head_model(path: str | Path, trained: TrainedHead) -> None:
    """The head file ``ml/mldecoder/model.pt``: weights, ``MLDecoderParams``, token and text widths,
    the training label columns and their count (written atomically)."""
    head = trained.head
    state = {
        "kind": HEAD_MODEL_KIND,
        "head": head.state_dict(),
        "mldecoder": dataclasses.asdict(trained.params),
        "token_dim": int(head.memory_proj.in_features),
        "text_dim": int(head.query_proj.in_features),
        "n_labels": len(trained.label_indices),
        "label_indices": np.asarray(trained.label_indices, np.int64),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_head_model(path: str | Path) -> tuple[CLIPDecoderHead, dict]:
    """``(head in eval mode on the CPU, the file's other fields)`` from :func:`save_head_model`.

    Raises:
        ValueError: the file is not a token-trained head (e.g. an image learner's ``model.pt``).
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("kind") != HEAD_MODEL_KIND:
        raise ValueError(f"{path} is not a CLIP-Decoder head trained on patch tokens")
    head = CLIPDecoderHead(state["token_dim"], state["text_dim"], MLDecoderParams(**state["mldecoder"]))
    head.load_state_dict(state.pop("head"))
    return head.eval(), state


def predict_mldecoder(
    head: CLIPDecoderHead,
    tokens: np.ndarray,
    label_ids: np.ndarray,
    classifier: np.ndarray,
    image_chunk: int = 256,
    device: str | None = None,
) -> np.ndarray:
    """Rule ``predict_mldecoder``: ``(N, C)`` sigmoid scores over *every* label (``label_index``
    order, whatever the training columns were), :func:`~s3a.multilabel.headtrain.predict_head` in
    chunks of ``image_chunk`` images (memory: the ``N x C`` float64 output, NUS-WIDE test ~83k x
    1,006: 0.67 GB)."""
    from s3a.device import pick_device

    text = np.asarray(classifier)[np.argsort(label_ids)]
    return predict_head(head, tokens, text, image_chunk, str(pick_device(device)))
