"""Views and datasets of self-training (spec 6.2).

The teacher sees a weak view (resize, random crop), the student a strong one (random resized crop
with scale 0.3-1, horizontal flip, RandAugment m9 with std 0.5 and increasing severity). Input size,
normalisation and interpolation come from the model's preprocessing configuration
(:attr:`s3a.models.LoadedClip.preprocess_cfg`), so training sees what evaluation sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from s3a.train.preempt import sample_seed, seeded


def weak_view(
    size: int, mean: Sequence[float], std: Sequence[float], interpolation: str = "bicubic"
) -> Callable:
    """Resize the shorter side to ``size``, random ``size`` crop, normalise with ``mean``/``std``."""
    return T.Compose(
        [
            T.Resize(size, interpolation=T.InterpolationMode(interpolation)),
            T.RandomCrop(size),
            T.ToTensor(),
            T.Normalize(tuple(mean), tuple(std)),
        ]
    )


def _posterize_keeping_zero_bits(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """Posterize that accepts 0 bits (a black image), as Pillow did before version 11."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    from PIL import ImageOps

    return ImageOps.posterize(img, bits_to_keep)


def _patch_timm_posterize() -> None:
    """RandAugment ``inc1`` with a magnitude std can draw the top level, i.e. posterize to 0 bits, which
    current Pillow rejects (``ValueError: bits must be between or equal to 1 and 8``) and which used to
    give a black image; route timm's posterize ops through a version that keeps the old behaviour."""
    from timm.data import auto_augment

    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        auto_augment.NAME_TO_OP[name] = _posterize_keeping_zero_bits


def strong_view(
    size: int, mean: Sequence[float], std: Sequence[float], interpolation: str = "bicubic"
) -> Callable:
    """timm's training transform with RandAugment ``rand-m9-mstd0.5-inc1`` and no colour jitter,
    normalised with ``mean``/``std``."""
    from timm.data import create_transform

    _patch_timm_posterize()
    return create_transform(
        size,
        is_training=True,
        scale=(0.3, 1.0),
        auto_augment="rand-m9-mstd0.5-inc1",
        interpolation=interpolation,
        color_jitter=0.0,
        re_prob=0.0,
        mean=tuple(mean),
        std=tuple(std),
    )


def training_views(preprocess_cfg: dict) -> tuple[Callable, Callable]:
    """``(weak, strong)`` views for a model's preprocessing config (``size``, ``mean``, ``std``,
    ``interpolation``; see :func:`s3a.models.preprocess_config`)."""
    args = (
        int(preprocess_cfg["size"]),
        preprocess_cfg["mean"],
        preprocess_cfg["std"],
        preprocess_cfg.get("interpolation", "bicubic"),
    )
    return weak_view(*args), strong_view(*args)


class _SeededViews(Dataset):
    """Images of ``paths`` whose random views are seeded per ``(seed, epoch, index)``.

    The draw of a sample does not depend on the loader's workers or on what was drawn before it, so
    an epoch resumed in its middle (:mod:`s3a.train.preempt`) draws what the uninterrupted epoch drew.
    Call :meth:`set_epoch` before each epoch's loader is created.
    """

    def __init__(self, paths: Sequence[str], seed: int = 0) -> None:
        self.paths, self.seed, self.epoch = list(paths), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def _image(self, i: int) -> Image.Image:
        with Image.open(self.paths[i]) as img:
            return img.convert("RGB")


class TwoViews(_SeededViews):
    """``(weak, strong, index)`` of ``paths[index]``."""

    def __init__(self, paths: Sequence[str], weak: Callable, strong: Callable, seed: int = 0) -> None:
        super().__init__(paths, seed)
        self.weak, self.strong = weak, strong

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        img = self._image(i)
        with seeded(sample_seed(self.seed, self.epoch, i)):
            return self.weak(img), self.strong(img), i


class OneView(_SeededViews):
    """``(view(image), index)`` of ``paths[index]`` (one augmented view per image)."""

    def __init__(self, paths: Sequence[str], view: Callable, seed: int = 0) -> None:
        super().__init__(paths, seed)
        self.view = view

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self._image(i)
        with seeded(sample_seed(self.seed, self.epoch, i)):
            return self.view(img), i
