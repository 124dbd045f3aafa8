"""Batched, normalised CLIP encoding of images and texts, and zero-shot prediction.

Shapes: image and text embeddings are ``(N, D)`` float32 with unit-norm rows; a text classifier is
``(C, D)``; logits are ``scale * image @ classifier.T`` with the fixed scale 100 of spec 2.2.
On CUDA the image encoder runs under bf16 autocast; the text encoder (classifier, phrase vectors)
and every logit over the names (:func:`vocabulary_logits`) run in fp32 with autocast off, because
rounding there decides labels. Everything runs in ``torch.inference_mode()``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from s3a.classify import LOGIT_SCALE, autocast_off, vocabulary_logits, zero_shot  # noqa: F401 (re-exported)
from s3a.config import Embed, Int
from s3a.decode import (  # noqa: F401 (re-exported: s3a.embed was their home)
    GPU_JPEG_CODECS,
    FastDecode,
    FinishedBatch,
    GpuDecode,
    ahead,
    collate_packed,
    collate_stacked,
    resize_center_crop,
)
from s3a.vocab import fill_templates

log = logging.getLogger(__name__)


class EmbedParams(Embed):
    """Settings of image embedding: the config block :class:`s3a.config.Embed` and the loader.

    Attributes:
        batch_size: images per forward pass.
        num_workers: DataLoader worker processes reading images (0 = in the main process).
        device: ``None`` picks ``cuda`` when present.
        decoder: how image files become model input (all follow the model's own input size and
            normalisation):

            * ``pil``: the exact path of spec 3 (PIL decode, the model's own transform, in the workers);
            * ``fast``: JPEGs decoded at a reduced DCT scale and resized in torch in the workers, uint8
              batches normalised on the device (:class:`FastDecode`); mean cosine >= 0.99 to ``pil``;
            * ``gpu``: the workers only read the file bytes; JPEGs are decoded in batches by nvJPEG on
              the device, resized and cropped there (:class:`GpuDecode`); mean cosine >= 0.999 to
              ``pil``. Other formats, and JPEGs nvJPEG rejects (CMYK), are decoded on the CPU.
        prefetch: with the ``gpu`` decoder, batches decoded and resized ahead by a background thread
            on a CUDA stream of its own (:func:`s3a.decode.ahead`), so that the main thread only runs
            the model; 0 decodes in the main thread.
    """

    num_workers: Int = Field(4, ge=0)
    device: str | None = None
    prefetch: Int = Field(2, ge=0)


@dataclass
class ImageEmbeddings:
    """Result of :func:`encode_images`.

    Attributes:
        index: ``(M,)`` positions (into the input path list) of the images that decoded.
        embeddings: ``(M, D)`` unit-norm float32 embeddings, row ``j`` for ``paths[index[j]]``.
        failed: ``(path, reason)`` for each unreadable or corrupt image (skipped, not embedded).
    """

    index: np.ndarray
    embeddings: np.ndarray
    failed: list[tuple[str, str]] = field(default_factory=list)


class ImageFiles(Dataset):
    """A map-style dataset of image files: item ``i`` is ``(i, load(paths[i]), "")``, or ``(i, None,
    reason)`` when ``load`` raises (a corrupt or unreadable file is skipped and reported, never fatal).

    ``load`` is any picklable path -> tensor callable (the PIL transform, :class:`FastDecode`,
    :class:`GpuDecode`, the tile reader of :mod:`s3a.multilabel.views.tiles`), run in the loader's workers.
    """

    def __init__(self, paths: Sequence[str], load: Callable[[str], torch.Tensor]) -> None:
        self.paths = list(paths)
        self.load = load

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            return i, self.load(self.paths[i]), ""
        except Exception as exc:  # any decode error: the image is skipped and reported
            return i, None, f"{type(exc).__name__}: {exc}"


class _PilLoad:
    """The exact path of spec 3: PIL decode, then the model's own evaluation transform."""

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, path: str) -> torch.Tensor:
        with Image.open(path) as img:
            return self.transform(img.convert("RGB"))

    def finish(self, images: torch.Tensor, device: torch.device) -> FinishedBatch:
        return list(range(len(images))), images.to(device, non_blocking=True), []


def image_batches(
    paths: Sequence[str],
    transform: Callable,
    params: EmbedParams,
    device: torch.device,
    sampler: torch.utils.data.Sampler | None = None,
    desc: str = "embed images",
    progress: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, list[tuple[int, str]]]]:
    """Model-ready batches of image files, read the way ``params.decoder`` says.

    The one image reader of the project: :func:`encode_images` and the training's teacher features
    use it. Yields ``(index, images, failed)``: ``index`` ``(B,)`` positions into ``paths`` (CPU
    int64), ``images`` ``(B, 3, S, S)`` normalised float on ``device`` (``None`` when no image of the
    batch decoded), ``failed`` ``[(position, reason)]`` of the batch's unreadable files. Host memory
    is bounded by the loader's prefetch (a few batches), whatever ``len(paths)``.
    """
    if params.decoder == "gpu":
        reader, collate = GpuDecode.from_transform(transform), collate_packed
    elif params.decoder == "fast":
        reader, collate = FastDecode.from_transform(transform), collate_stacked
    else:
        reader, collate = _PilLoad(transform), collate_stacked
    loader = DataLoader(
        ImageFiles(paths, reader),
        batch_size=params.batch_size,
        sampler=sampler,
        num_workers=params.num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda" and params.decoder != "gpu",
        persistent_workers=False,
    )

    def finished() -> Iterator[tuple[torch.Tensor, torch.Tensor | None, list[tuple[int, str]]]]:
        for idx, images, bad in tqdm(loader, desc=desc, unit="batch", disable=not progress, mininterval=5):
            if images is None:
                yield idx[:0], None, bad
                continue
            keep, ready, late = reader.finish(images, device)
            yield idx[keep], ready, bad + [(int(idx[j]), why) for j, why in late]

    if params.decoder == "gpu" and params.prefetch > 0:  # decoded on the device: off this thread
        yield from ahead(finished(), device, params.prefetch)
    else:
        yield from finished()


def image_autocast(device: torch.device):
    """The autocast context of the image encoders: bf16 on CUDA, off on the CPU (fp32 there).

    Wrap image forward passes in it (``with torch.inference_mode(), image_autocast(device):``); text
    encoding and logits over names run under :func:`s3a.classify.autocast_off` instead.
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def encode_images(
    model: torch.nn.Module,
    transform: Callable,
    paths: Sequence[str],
    params: EmbedParams = EmbedParams(),
    device: torch.device | None = None,
) -> ImageEmbeddings:
    """Encode image files into unit-norm embeddings, skipping (and reporting) unreadable ones.

    Args:
        model: an open_clip model (``encode_image`` is used).
        transform: PIL image -> ``(3, H, W)`` tensor (open_clip's evaluation transform); the
            ``fast`` and ``gpu`` decoders read the input size and normalisation from it.
        paths: image files, length ``N``.

    Memory: the ``(N, D)`` float32 result (2.6 GB for ImageNet-1K's 1.28M images at D = 512) plus a
    few batches in flight.
    """
    device = device or next(model.parameters()).device
    index, chunks, failed = [], [], []
    pending: tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None] | None = None

    def collect() -> None:  # the previous batch's features, copied while the next batch decoded
        idx, host, copied = pending
        if copied is not None:
            copied.synchronize()
        chunks.append(host)
        index.append(idx)

    with torch.inference_mode(), image_autocast(device):
        for idx, images, bad in image_batches(paths, transform, params, device):
            failed.extend((paths[i], why) for i, why in bad)
            if images is None:
                continue
            feats = F.normalize(model.encode_image(images).float(), dim=-1)
            if device.type == "cuda":  # no wait here: the GPU runs this batch while the CPU reads the next
                host = torch.empty(feats.shape, dtype=torch.float32, pin_memory=True)
                host.copy_(feats, non_blocking=True)
                copied = torch.cuda.Event()
                copied.record()
            else:
                host, copied = feats, None
            if pending is not None:
                collect()
            pending = (idx, host, copied)
        if pending is not None:
            collect()
    for path, why in failed:
        log.warning("skipped unreadable image %s (%s)", path, why)
    if failed:
        log.warning("%d of %d images could not be read and were skipped", len(failed), len(paths))
    dim = int(model.visual.output_dim) if hasattr(model.visual, "output_dim") else 0
    emb = torch.cat(chunks).numpy() if chunks else np.zeros((0, dim), np.float32)
    ids = torch.cat(index).numpy() if index else np.zeros(0, np.int64)
    return ImageEmbeddings(index=ids.astype(np.int64), embeddings=emb.astype(np.float32), failed=failed)


def _trimmable(model: torch.nn.Module) -> bool:
    """A CLIP text tower with a causal mask and EOT pooling, which may run on shorter sequences."""
    return (
        getattr(model, "text_pool_type", None) == "argmax"
        and getattr(model, "attn_mask", None) is not None
        and hasattr(model, "token_embedding")
    )


def encode_text_tokens(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)``, run on the batch's longest prompt instead of the full context.

    With a causal mask a position never sees later ones, and the pooled (end-of-text) position lies
    within the longest prompt, so cutting the zero padding changes nothing but the cost.
    """
    if not _trimmable(model):
        return model.encode_text(tokens)
    from open_clip.transformer import text_global_pool

    length = int((tokens != 0).sum(dim=1).max())
    tokens = tokens[:, :length]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
    x = text_global_pool(x, tokens, "argmax")
    if model.text_projection is None:
        return x
    return (
        model.text_projection(x)
        if isinstance(model.text_projection, torch.nn.Linear)
        else x @ model.text_projection
    )


class _TextChunks(Dataset):
    """Item ``i`` is ``tokenizer(texts[i * chunk : (i + 1) * chunk])`` (see :func:`tokenize_texts`)."""

    def __init__(self, tokenizer: Callable, texts: Sequence[str], chunk: int) -> None:
        self.tokenizer, self.texts, self.chunk = tokenizer, list(texts), chunk

    def __len__(self) -> int:
        return -(-len(self.texts) // self.chunk)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.tokenizer(self.texts[i * self.chunk : (i + 1) * self.chunk])


def tokenize_texts(
    tokenizer: Callable, texts: Sequence[str], workers: int | None = None, chunk: int = 4096
) -> torch.Tensor:
    """``tokenizer(texts)``, the chunks of ``chunk`` texts tokenised in ``workers`` processes.

    open_clip's tokenizer is pure Python on one core (text clean-up, then byte-pair encoding): the
    vocabulary's 20,071 names x 7 templates take about 6-9 s alone, most of the text classifier's time
    on a GPU. The chunks go to DataLoader worker processes (forked, as the image loaders are) and come
    back in order, so the result is the same tensor as one call. ``workers`` None: the CPUs this process
    may use (at most 16); below 2, or a single chunk, tokenises in this process.

    Returns:
        ``(len(texts), context)`` token ids, as the tokenizer gives them.
    """
    if workers is None:
        workers = min(16, usable_cpus())
    chunks = _TextChunks(tokenizer, texts, chunk)
    if workers < 2 or len(chunks) < 2:
        return tokenizer(list(texts))
    loader = DataLoader(chunks, batch_size=None, num_workers=min(workers, len(chunks)))
    return torch.cat(list(loader))


def encode_texts(
    model: torch.nn.Module,
    tokenizer: Callable,
    texts: Sequence[str],
    batch_size: int = 1024,
    device: torch.device | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Encode ``texts`` (length ``T``) into a ``(T, D)`` unit-norm float32 array.

    The prompts are tokenised in parallel (:func:`tokenize_texts`), then encoded in order of length,
    so each batch runs on its own longest prompt. The text tower runs in fp32 (autocast off) on every
    device: the classifier and the phrase vectors decide labels, and the 20K-name classifier is
    computed once.
    """
    device = device or next(model.parameters()).device
    if not texts:  # an empty (0, D) array of the model's embedding width
        with torch.inference_mode():
            dim = model.encode_text(tokenizer([""]).to(device)).shape[-1]
        return np.zeros((0, dim), np.float32)
    tokens = tokenize_texts(tokenizer, texts)
    order = torch.argsort((tokens != 0).sum(dim=1), stable=True)
    out = torch.empty(0)
    with torch.inference_mode(), autocast_off(device):
        starts = range(0, len(texts), batch_size)
        for s in tqdm(starts, desc="embed texts", unit="batch", disable=not progress, mininterval=5):
            idx = order[s : s + batch_size]
            feats = F.normalize(encode_text_tokens(model, tokens[idx].to(device)).float(), dim=-1).cpu()
            if out.numel() == 0:
                out = torch.empty(len(texts), feats.shape[1])
            out[idx] = feats
    return out.numpy()


def text_classifier(
    model: torch.nn.Module,
    tokenizer: Callable,
    names: Sequence[str | tuple[str, ...]],
    templates: Sequence[str],
    batch_size: int = 1024,
    device: torch.device | None = None,
) -> np.ndarray:
    """Prompt-ensemble classifier (spec 2.2): ``(len(names), D)`` unit-norm rows.

    Each name is put into every template, each prompt embedding is L2-normalised, the template
    embeddings of a name are averaged and the mean is normalised again. A name may be a tuple
    filling numbered slots (``(name, phrase)`` for the description templates of spec 5.4).
    """
    if not templates:
        raise ValueError("text_classifier needs at least one template")
    prompts = fill_templates(names, templates)
    emb = encode_texts(model, tokenizer, prompts, batch_size, device)
    mean = emb.reshape(len(names), len(templates), emb.shape[1]).mean(axis=1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True).clip(min=1e-12)


def usable_cpus() -> int:
    """The CPUs this process may use (its affinity: a Slurm job's cores, not the node's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def default_num_workers() -> int:
    """Loader workers: the CPUs this process may use, minus one for the main process, at most 16."""
    return max(0, min(16, usable_cpus() - 1))


@dataclass
class SplitImages:
    """The set-up of a rule that encodes one split's image files (``embed_images``,
    ``embed_patch_tokens``): the split's manifest ``rows`` (``image_id, path``), the loaded ``clip``
    model and the reader ``params``."""

    rows: object  # pandas.DataFrame
    clip: object  # s3a.models.LoadedClip
    params: EmbedParams

    def unreadable(self, n_read: int, log_path: str) -> str | None:
        """The one-line error when the split has images but none of them could be read, else None."""
        if not len(self.rows) or n_read:
            return None
        where = os.path.commonpath([os.path.dirname(p) for p in self.rows.path])
        return f"no readable image in {where}: {len(self.rows)} unreadable files, see {log_path}"


def split_images(
    manifest_path: str, split: str, model: dict, batch_size: int, decoder: str, threads: int
) -> SplitImages:
    """Read the manifest rows of ``split``, load the model entry ``model`` (a :class:`ModelSpec`
    dict) and the reader settings: ``batch_size``, ``decoder`` and one loader worker per thread
    beyond the main process. Memory: the split's ``image_id, path`` rows (ImageNet-1K train: ~1.28M
    rows, ~200 MB) and the model."""
    from s3a.io import read_table
    from s3a.models import ModelSpec, load_clip

    manifest = read_table(manifest_path, columns=["image_id", "path", "split"])
    rows = manifest[manifest.split == split]
    clip = load_clip(ModelSpec(**model))
    params = EmbedParams(batch_size=batch_size, num_workers=max(0, threads - 1), decoder=decoder)
    return SplitImages(rows, clip, params)
