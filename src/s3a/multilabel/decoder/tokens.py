"""Patch tokens of the CLIP image tower for the CLIP-Decoder head (spec 7, rule
``embed_patch_tokens``; backbone frozen): :func:`embed_patch_tokens` encodes image files with
:func:`s3a.multilabel.decoder.head.encode_patch_tokens` and streams the ``(N, P, D)`` tokens into a
float16 ``.npy`` memmap beside an id table, so the tokens are never held twice in memory;
:func:`load_tokens` maps them back (read by batch when training).

Cost: ``N · P · D · 2`` bytes on disk (COCO train 82k x 196 x 512: 16 GB float16; the images of a
ViT-B/16 at 224 px), one forward of the tower per image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from s3a.io import atomic_path, write_table
from s3a.multilabel.decoder.head import encode_patch_tokens

log = logging.getLogger(__name__)

__all__ = [
    "embed_patch_tokens",
    "load_tokens",
]


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
    """Patch tokens of image files (:func:`~s3a.multilabel.decoder.head.encode_patch_tokens`) streamed into
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
