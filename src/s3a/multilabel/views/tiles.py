"""Local views: a g x g grid of crops per image, embedded with one decode per image (spec 4).

Grid geometry on the full-resolution image of width W and height H: ``w = W // g``, ``h = H // g``;
tile ``t = r·g + c`` (row-major) has box ``(c·w, r·h, (c+1)·w, (r+1)·h)``; the right/bottom
remainder (< g px) is dropped. Each tile then goes through the model's input geometry: ``fit:
center_crop`` (shorter side to the input size, bicubic, centre crop: the evaluation transform) or
``squash`` (the whole tile resized to a square, nothing cut).

Reading reuses :mod:`s3a.embed`: its file dataset, the ``resize_center_crop`` geometry, device-side
normalisation and bf16 autocast. A loader worker decodes an image once and emits its M crops as
uint8 ``(M, 3, S, S)``; the main process normalises them on the device and encodes ``images x M``
crops per forward.

Cost at full scale: COCO train (82k images, M = 9) is 740k crops, i.e. 9x the forward passes of
``embed_images``; the output is ``N·M·D`` floats (1.5 GB float32 at D = 512, half with ``dtype:
float16``). Host memory: a few loader batches of ``images x M x 3 x S x S`` uint8.

The rule ``embed_tiles`` is :func:`embed_tiles` (the ``ml/tiles/{split}`` table; :func:`read_tiles`
reads it back). ``embed/{split}`` and ``ml/tiles/{split}`` each skip the images their reader could
not use (logged there): :func:`align_views` pairs the two views by ``image_id`` and refuses two
different image sets with one message naming the ids, so that no row is silently mismatched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from s3a.decode import DeviceNormalized, pil_pixels, resize_center_crop
from s3a.embed import ImageFiles, image_autocast
from s3a.multilabel.views.tables import split_rows, tiles_table

log = logging.getLogger(__name__)
FITS = ("center_crop", "squash")


@dataclass(frozen=True)
class TileParams:
    """Settings of tile embedding (config ``multilabel.tiles``).

    Attributes:
        grid: g; M = g² tiles per image (3 -> 9).
        fit: ``center_crop`` (the model's evaluation geometry, as CDUL does) or ``squash``.
        dtype: stored embedding type, ``float32`` or ``float16``.
        batch_size: crops per forward pass (images per batch = ``max(1, batch_size // M)``).
        num_workers: loader worker processes (0 = in the main process).
        device: ``None`` picks the model's device.
    """

    grid: int = 3
    fit: str = "center_crop"
    dtype: str = "float32"
    batch_size: int = 256
    num_workers: int = 4
    device: str | None = None

    def __post_init__(self) -> None:
        if self.grid < 1:
            raise ValueError(f"grid must be >= 1, got {self.grid}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {self.fit!r}")
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, got {self.dtype!r}")

    @property
    def n_tiles(self) -> int:
        return self.grid * self.grid


def tile_boxes(width: int, height: int, grid: int, name: str = "image") -> list[tuple[int, int, int, int]]:
    """The g² boxes ``(x0, y0, x1, y1)`` of the grid, row-major (see the module docstring).

    Example: 500 x 375, g = 3 -> tile 0 ``(0, 0, 166, 125)``, tile 8 ``(332, 250, 498, 375)``.

    Raises:
        ValueError: naming ``name`` when the image is narrower or lower than ``grid`` pixels.
    """
    if width < grid or height < grid:
        raise ValueError(f"{name}: {width}x{height} px is too small for a {grid}x{grid} tile grid")
    w, h = width // grid, height // grid
    return [(c * w, r * h, (c + 1) * w, (r + 1) * h) for r in range(grid) for c in range(grid)]


class _TileLoad(DeviceNormalized):
    """Path -> ``(uint8 (M, 3, S, S) crops, int32 (M, 4) boxes)``: one decode, M crops."""

    def __init__(self, size: int, mean, std, grid: int, fit: str) -> None:
        super().__init__(size, mean, std)
        self.grid, self.fit = grid, fit

    def __call__(self, path: str) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(path) as img:
            pixels = pil_pixels(img)
        height, width = int(pixels.shape[1]), int(pixels.shape[2])
        boxes = tile_boxes(width, height, self.grid, path)
        crops = [pixels[:, y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]
        if self.fit == "center_crop":
            out = resize_center_crop(crops, self.size)
        else:
            batch = torch.stack(crops).float()
            out = F.interpolate(
                batch, size=(self.size, self.size), mode="bicubic", antialias=True, align_corners=False
            )
            out = out.round().clamp(0, 255).to(torch.uint8)
        return out, torch.tensor(boxes, dtype=torch.int32)


def _collate(batch):
    ok = [(i, x) for i, x, _ in batch if x is not None]
    bad = [(i, why) for i, x, why in batch if x is None]
    if not ok:
        return torch.zeros(0, dtype=torch.long), None, None, bad
    return (
        torch.tensor([i for i, _ in ok], dtype=torch.long),
        torch.stack([x[0] for _, x in ok]),
        torch.stack([x[1] for _, x in ok]),
        bad,
    )


@dataclass
class TileEmbeddings:
    """Result of :func:`encode_tiles`: ``index`` ``(N',)`` positions of the decoded images,
    ``boxes`` ``(N', M, 4)`` int32, ``embeddings`` ``(N', M, D)`` unit-norm float32, ``failed``
    ``(path, reason)`` of the skipped images."""

    index: np.ndarray
    boxes: np.ndarray
    embeddings: np.ndarray
    failed: list[tuple[str, str]] = field(default_factory=list)


def encode_tiles(
    model: torch.nn.Module,
    transform: Callable,
    paths: Sequence[str],
    params: TileParams = TileParams(),
    device: torch.device | None = None,
    progress: bool = True,
) -> TileEmbeddings:
    """Embed the g x g tiles of every image (unreadable or too small images are skipped and logged).

    Args:
        model: an open_clip model (``encode_image``).
        transform: its evaluation transform, from which the input size and normalisation are read.
        paths: ``N`` image files.

    Memory: the ``(N, M, D)`` float32 result (COCO train at D = 512: 1.5 GB) plus loader batches.
    """
    device = device or (torch.device(params.device) if params.device else next(model.parameters()).device)
    base = DeviceNormalized.from_transform(transform)
    reader = _TileLoad(base.size, base.mean, base.std, params.grid, params.fit)
    m = params.n_tiles
    loader = DataLoader(
        ImageFiles(paths, reader),
        batch_size=max(1, params.batch_size // m),
        num_workers=params.num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )
    index, boxes, chunks, failed = [], [], [], []
    with torch.inference_mode(), image_autocast(device):
        for idx, crops, bxs, bad in tqdm(
            loader, desc="embed tiles", unit="batch", disable=not progress, mininterval=5
        ):
            failed.extend((paths[i], why) for i, why in bad)
            if crops is None:
                continue
            b = crops.shape[0]
            x = reader.normalize(crops.to(device, non_blocking=True).reshape(b * m, *crops.shape[2:]))
            feats = F.normalize(model.encode_image(x).float(), dim=-1)
            chunks.append(feats.reshape(b, m, -1).cpu())
            index.append(idx)
            boxes.append(bxs)
    for path, why in failed:
        log.warning("skipped image %s (%s)", path, why)
    if not chunks:
        dim = int(getattr(model.visual, "output_dim", 0))
        return TileEmbeddings(
            np.zeros(0, np.int64), np.zeros((0, m, 4), np.int32), np.zeros((0, m, dim), np.float32), failed
        )
    return TileEmbeddings(
        torch.cat(index).numpy().astype(np.int64),
        torch.cat(boxes).numpy(),
        torch.cat(chunks).numpy().astype(np.float32),
        failed,
    )


def embed_tiles(clip, manifest: pd.DataFrame, split: str, params: TileParams) -> pa.Table:
    """Rule ``embed_tiles``: the ``ml/tiles/{split}`` table (:func:`s3a.multilabel.views.tables.tiles_table`)
    of the split's images. Unreadable images, and images smaller than the grid, are skipped and
    logged by :func:`~s3a.multilabel.views.tiles.encode_tiles` (as :func:`s3a.embed.encode_images` skips
    unreadable ones); they have no rows. Cost: ``M`` forwards per image (module docstring)."""
    rows = split_rows(manifest, split)
    result = encode_tiles(clip.model, clip.preprocess, rows["path"].tolist(), params)
    log.info(
        "%s: %d tiles from each of %d of %d images (%d skipped)",
        split, params.n_tiles, len(result.index), len(rows), len(result.failed),
    )  # fmt: skip
    ids = rows["image_id"].to_numpy(dtype=np.int64)[result.index]
    return tiles_table(ids, result.boxes, result.embeddings, params.dtype)
