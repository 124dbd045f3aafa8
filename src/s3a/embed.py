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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from tqdm.auto import tqdm

from s3a.models import pick_device
from s3a.vocab import fill_templates

log = logging.getLogger(__name__)

LOGIT_SCALE = 100.0
DECODERS = ("pil", "fast")


@dataclass(frozen=True)
class EmbedParams:
    """Settings of image embedding.

    Attributes:
        batch_size: images per forward pass.
        num_workers: DataLoader worker processes decoding images (0 = in the main process).
        device: ``None`` picks ``cuda`` when present.
        decoder: ``pil`` = the exact PIL path of spec 3 (the model's own transform); ``fast`` =
            libjpeg-turbo decoding and tensor resizing in the workers, uint8 batches normalised on
            the device (:class:`FastDecode`); agrees with ``pil`` to a mean cosine >= 0.99.
    """

    batch_size: int = 256
    num_workers: int = 4
    device: str | None = None
    decoder: str = "pil"

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")


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


class FastDecode:
    """Path -> ``(3, size, size)`` uint8 tensor: reduced-scale JPEG decoding, shorter side resized to
    ``size`` (bicubic, antialiased, in torch), centre crop. Normalisation happens on the device.

    Built from an open_clip evaluation transform by :meth:`from_transform`, so it follows the model's
    input size and normalisation.
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.size, self.mean, self.std = int(size), tuple(mean), tuple(std)

    @classmethod
    def from_transform(cls, transform: Callable) -> FastDecode:
        size = mean = std = None
        for step in getattr(transform, "transforms", []):
            if isinstance(step, T.Resize):
                size = step.size if isinstance(step.size, int) else min(step.size)
            if isinstance(step, T.Normalize):
                mean, std = step.mean, step.std
        if size is None or mean is None:
            raise ValueError(
                f"cannot read the input size and normalisation from {transform!r}; use decoder 'pil'"
            )
        return cls(size, mean, std)

    def _decode(self, path: str) -> torch.Tensor:
        """uint8 ``(3, H, W)``; JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that
        still leaves the shorter side >= ``size``, which skips most of the decoding work."""
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (self.size, self.size))
            return torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1)

    def __call__(self, path: str) -> torch.Tensor:
        image = self._decode(path)
        h, w = image.shape[1:]
        scale = self.size / min(h, w)
        new = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
        resized = F.interpolate(
            image[None].float(), size=new, mode="bicubic", antialias=True, align_corners=False
        )
        top, left = (new[0] - self.size) // 2, (new[1] - self.size) // 2
        crop = resized[0, :, top : top + self.size, left : left + self.size]
        return crop.round().clamp(0, 255).to(torch.uint8)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)`` on the device -> normalised float."""
        mean = torch.tensor(self.mean, device=batch.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, 3, 1, 1)
        return (batch.float() / 255.0 - mean) / std


class _ImageFiles(Dataset):
    """``load(paths[i])``; a failure yields the reason instead of an image."""

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


def _identity(images: torch.Tensor) -> torch.Tensor:
    return images


def image_dataset(
    paths: Sequence[str], transform: Callable, decoder: str = "pil"
) -> tuple[Dataset, Callable[[torch.Tensor], torch.Tensor]]:
    """The dataset :func:`encode_images` reads, and the on-device step that finishes its batches.

    Items are ``(i, image or None, reason)``; batch them with :func:`collate_images`. The second value
    turns a batch on the device into model input (normalisation for the ``fast`` decoder).
    """
    if decoder == "fast":
        fast = FastDecode.from_transform(transform)
        return _ImageFiles(paths, fast), fast.normalize
    return _ImageFiles(paths, _PilLoad(transform)), _identity


def collate_images(batch: list[tuple[int, torch.Tensor | None, str]]):
    """``(index, images or None, [(i, reason) of failures])`` of a list of :func:`image_dataset` items."""
    ok = [(i, x) for i, x, _ in batch if x is not None]
    bad = [(i, why) for i, x, why in batch if x is None]
    idx = torch.tensor([i for i, _ in ok], dtype=torch.long)
    images = torch.stack([x for _, x in ok]) if ok else None
    return idx, images, bad


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _fp32(device: torch.device):
    """Autocast off on ``device`` (inside an outer autocast region too)."""
    return torch.autocast(device.type if device.type in ("cuda", "cpu") else "cpu", enabled=False)


def vocabulary_logits(
    features: torch.Tensor, classifier: torch.Tensor, scale: float = LOGIT_SCALE
) -> torch.Tensor:
    """``scale * normalize(features) @ classifier.T`` in fp32, autocast off: ``(B, C)`` float32.

    The one head of every logit over the names that decides a label or a confidence (training
    teacher and student, zero-shot, the vote, evaluation). ``features`` ``(B, D)`` may come from an
    encoder run in bf16; ``classifier`` ``(C, D)`` holds unit-norm rows. Gradients flow to ``features``.
    """
    with _fp32(features.device):
        return scale * F.normalize(features.float(), dim=-1) @ classifier.float().T


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
            ``fast`` decoder reads the input size and normalisation from it.
        paths: image files, length ``N``.
    """
    device = device or next(model.parameters()).device
    data, prepare = image_dataset(paths, transform, params.decoder)
    loader = DataLoader(
        data,
        batch_size=params.batch_size,
        num_workers=params.num_workers,
        collate_fn=collate_images,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    index, chunks, failed = [], [], []
    with torch.inference_mode(), _autocast(device):
        for idx, images, bad in tqdm(loader, desc="embed images", unit="batch", mininterval=5):
            failed.extend((paths[i], why) for i, why in bad)
            if images is None:
                continue
            feats = model.encode_image(prepare(images.to(device, non_blocking=True)))
            chunks.append(F.normalize(feats.float(), dim=-1).cpu())
            index.append(idx)
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


def encode_texts(
    model: torch.nn.Module,
    tokenizer: Callable,
    texts: Sequence[str],
    batch_size: int = 1024,
    device: torch.device | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Encode ``texts`` (length ``T``) into a ``(T, D)`` unit-norm float32 array.

    Prompts are encoded in order of length, so each batch runs on its own longest prompt. The text
    tower runs in fp32 (autocast off) on every device: the classifier and the phrase vectors decide
    labels, and the 20K-name classifier is computed once.
    """
    device = device or next(model.parameters()).device
    if not texts:  # an empty (0, D) array of the model's embedding width
        with torch.inference_mode():
            dim = model.encode_text(tokenizer([""]).to(device)).shape[-1]
        return np.zeros((0, dim), np.float32)
    tokens = tokenizer(list(texts))
    order = torch.argsort((tokens != 0).sum(dim=1), stable=True)
    out = torch.empty(0)
    with torch.inference_mode(), _fp32(device):
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


def zero_shot(
    image_embeddings: np.ndarray,
    classifier: np.ndarray,
    candidates: np.ndarray | None = None,
    scale: float = LOGIT_SCALE,
    chunk: int = 8192,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of ``softmax(scale * z @ W.T)`` for every image, computed in chunks (fp32).

    Memory is bounded whatever ``N`` is: two ``(chunk, C)`` float32 blocks (about 1.3 GB at the
    default chunk and C = 20,071), never the ``N x C`` matrix (103 GB at ImageNet-1K's 1.28M images).

    Args:
        image_embeddings: ``(N, D)`` unit-norm.
        classifier: ``(C, D)`` unit-norm rows.
        candidates: optional ``(K,)`` row indices of ``classifier`` to restrict the argmax to
            (the softmax is then over those rows only).

    Returns:
        ``(pred, prob)``: ``(N,)`` int64 row indices into ``classifier`` and ``(N,)`` float32
        probabilities of the chosen row.
    """
    dev = pick_device(device)
    rows = np.arange(len(classifier)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    w = torch.from_numpy(np.ascontiguousarray(classifier[rows], dtype=np.float32)).to(dev)
    preds, probs = [], []
    with torch.inference_mode():
        for s in range(0, len(image_embeddings), chunk):
            z = torch.from_numpy(np.ascontiguousarray(image_embeddings[s : s + chunk], np.float32)).to(dev)
            p = torch.softmax(vocabulary_logits(z, w, scale), dim=-1)
            best, arg = p.max(dim=-1)
            preds.append(arg.cpu())
            probs.append(best.cpu())
    if not preds:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return rows[torch.cat(preds).numpy()], torch.cat(probs).numpy().astype(np.float32)


def default_num_workers() -> int:
    """Loader workers: the CPUs this process may use, minus one for the main process, at most 16."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(0, min(16, n - 1))
