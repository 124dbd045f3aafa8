"""The self-training views of spec 6.2 made on the device, a batch at a time (``train.augment: gpu``).

The CPU path (:mod:`s3a.train.augment`) decodes and augments every image in a loader worker, with
Pillow and timm. Here the workers only read the file bytes and draw each image's random parameters
(:class:`ViewSampler`); the main process decodes the batch on the device
(:class:`s3a.decode.GpuDecode`) and makes both views there, batched (:class:`DeviceViews`).

Same draws. The parameters are drawn by the CPU path's own transforms, under the same per-sample
seed (:func:`s3a.train.preempt.seeded`) and in the same order: torchvision's ``RandomCrop.get_params``
for the weak view; timm's ``RandomResizedCropAndInterpolation.get_params``, the flip's
``torch.rand`` and timm's ``RandAugment`` for the strong one, each RandAugment operation replaced by
a recorder of its name and arguments. So for a seed both paths choose the same crops, flips,
operations and magnitudes, and a resumed epoch redraws what the interrupted one drew.

Same operations. Each of the 15 operations of timm's increasing RandAugment set is applied to the
images that drew it, with their own arguments, as one batched computation that follows the Pillow
function timm calls (:mod:`s3a.train.rand_augment`). Resizing is torch's bicubic with antialiasing,
not Pillow's, so pixels differ from the CPU path's by about a level (the tests measure it).

Cost: per batch of ``B`` images, one interpolation per image and view, then for each of the two
RandAugment layers at most 15 batched operations; memory a few ``B x 3 x size x size`` float
tensors on the device.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from s3a.decode import DeviceNormalized, GpuDecode, pack, resize_crop, resized_shape
from s3a.train.augment import _SeededViews, strong_view
from s3a.train.preempt import sample_seed, seeded
from s3a.train.rand_augment import OPS, rand_augment


@dataclass(frozen=True)
class ViewDraws:
    """The random parameters of one image's two views.

    Attributes:
        weak: ``(top, left)`` of the weak view's ``size`` crop in the image resized to ``size``.
        crop: ``(top, left, height, width)`` of the strong view's crop in the image.
        flip: whether the strong view is mirrored.
        ops: the RandAugment operations applied to the strong view, in order, each ``(name, args)``
            with the arguments timm passes to its Pillow function (an operation whose probability
            draw skipped it is not listed).
    """

    weak: tuple[int, int]
    crop: tuple[int, int, int, int]
    flip: bool
    ops: tuple[tuple[str, tuple[float, ...]], ...]


class _Recorder:
    """Stands in for a RandAugment operation's Pillow function: notes its name and arguments."""

    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    def __call__(self, image, *args, **_):
        self.log.append((self.name, tuple(float(a) for a in args)))
        return image


def _stand_in(height: int, width: int) -> torch.Tensor:
    """A ``(3, height, width)`` tensor for the ``get_params`` functions, which read only its shape."""
    return torch.empty((1, 1, 1), dtype=torch.uint8).expand(3, height, width)


class ViewSampler:
    """Draws the random parameters of an image's weak and strong views as the CPU views draw them.

    Built from the same arguments as :func:`s3a.train.augment.training_views`; :meth:`draw` is called
    inside the sample's :func:`~s3a.train.preempt.seeded` block, where the CPU path calls its views.
    Picklable: loader workers get a copy.
    """

    def __init__(
        self, size: int, mean: Sequence[float], std: Sequence[float], interpolation: str = "bicubic"
    ) -> None:
        self.size = int(size)
        steps = strong_view(size, mean, std, interpolation).transforms
        self.crop = next(t for t in steps if type(t).__name__ == "RandomResizedCropAndInterpolation")
        self.flip_p = next(t for t in steps if isinstance(t, T.RandomHorizontalFlip)).p
        randaug = next(t for t in steps if type(t).__name__ == "RandAugment")
        if tuple(op.name for op in randaug.ops) != OPS:
            raise ValueError(f"unexpected RandAugment operations: {[op.name for op in randaug.ops]}")
        self.fill = tuple(int(v) for v in randaug.ops[0].kwargs["fillcolor"])
        self._log: list[tuple[str, tuple[float, ...]]] = []
        self.randaug = copy.copy(randaug)
        self.randaug.ops = []
        for op in randaug.ops:
            recording = copy.copy(op)
            recording.aug_fn = _Recorder(op.name, self._log)
            self.randaug.ops.append(recording)

    def draw(self, width: int, height: int) -> ViewDraws:
        """The draws of a ``width x height`` image, in the CPU path's order: the weak view's crop, then
        the strong view's crop, flip and RandAugment."""
        resized = resized_shape(height, width, self.size)  # the weak view's Resize(size)
        top, left, _, _ = T.RandomCrop.get_params(_stand_in(*resized), (self.size, self.size))
        crop = self.crop.get_params(_stand_in(height, width), self.crop.scale, self.crop.ratio)
        flip = bool(torch.rand(1) < self.flip_p)
        self._log.clear()
        self.randaug(None)
        return ViewDraws((int(top), int(left)), tuple(int(v) for v in crop), flip, tuple(self._log))


def crop_resize(
    images: Sequence[torch.Tensor], boxes: Sequence[tuple[int, int, int, int]], size: int
) -> torch.Tensor:
    """uint8 ``(3, H_i, W_i)`` images -> uint8 ``(B, 3, size, size)``: each image's ``(top, left,
    height, width)`` box resized to ``size x size`` (bicubic, antialiased when shrinking), as the
    strong view's random resized crop."""
    out = torch.empty(len(images), 3, size, size, dtype=torch.uint8, device=images[0].device)
    for j, (image, (top, left, height, width)) in enumerate(zip(images, boxes, strict=True)):
        box = image[None, :, top : top + height, left : left + width].float()
        resized = F.interpolate(box, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        out[j] = resized[0].round().clamp_(0, 255).to(torch.uint8)
    return out


class DeviceViews(DeviceNormalized):
    """The weak and strong views of a decoded batch, made on its device from the images'
    :class:`ViewDraws`, normalised with the model's mean and std."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], fill: Sequence[int]) -> None:
        super().__init__(size, mean, std)
        self.fill = tuple(int(v) for v in fill)

    def pixels(
        self, images: Sequence[torch.Tensor], draws: Sequence[ViewDraws]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``(B, 3, size, size)`` weak and strong views of uint8 ``(3, H_i, W_i)`` images."""
        weak = resize_crop(images, self.size, [d.weak for d in draws])
        strong = crop_resize(images, [d.crop for d in draws], self.size)
        flip = torch.tensor([d.flip for d in draws], device=strong.device).view(-1, 1, 1, 1)
        strong = torch.where(flip, strong.flip(-1), strong)
        return weak, rand_augment(strong, [d.ops for d in draws], self.fill)

    def __call__(
        self, images: Sequence[torch.Tensor], draws: Sequence[ViewDraws]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model inputs: normalised float ``(B, 3, size, size)`` weak and strong views."""
        weak, strong = self.pixels(images, draws)
        return self.normalize(weak), self.normalize(strong)


class ViewBytes(_SeededViews):
    """``(file, draws, index)`` of ``paths[index]``: the file as :class:`s3a.decode.GpuDecode` reads it
    in a worker (a JPEG's bytes, any other format's pixels) and the :class:`ViewDraws` of its views,
    drawn under the sample's seed as :class:`s3a.train.augment.TwoViews` draws them. Only the image's
    header is parsed (for its size)."""

    def __init__(self, paths: Sequence[str], sampler: ViewSampler, seed: int = 0) -> None:
        super().__init__(paths, seed)
        # the reader's size and normalisation go unused: only its file reading and decode_with are
        self.sampler, self.reader = sampler, GpuDecode(sampler.size, (0.0,) * 3, (1.0,) * 3)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ViewDraws, int]:
        data = self.reader(self.paths[i])
        if data.dim() == 1:
            with Image.open(io.BytesIO(data.numpy().tobytes())) as img:
                width, height = img.size
        else:
            height, width = int(data.shape[1]), int(data.shape[2])
        with seeded(sample_seed(self.seed, self.epoch, i)):
            return data, self.sampler.draw(width, height), i

    @staticmethod
    def collate(batch: list[tuple[torch.Tensor, ViewDraws, int]]):
        """``(packed files, [draws], (B,) indices)``: the files in one tensor (:func:`s3a.decode.pack`)."""
        return pack([b[0] for b in batch]), [b[1] for b in batch], torch.tensor([b[2] for b in batch])


def view_batches(
    loader: Iterable, views: DeviceViews, reader: GpuDecode, paths: Sequence[str], device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(weak, strong, indices)`` batches on ``device`` from a loader of :class:`ViewBytes`: each
    batch decoded there (``reader``) and its views made there (``views``).

    Raises:
        ValueError: an image of the batch cannot be decoded (the training set holds only images that
            the embedding step read; one that fails now has changed on disk).
    """
    for packed, draws, index in loader:
        _, made, bad = reader.decode_with(
            packed, device, lambda kept, images, draws=draws: views(images, [draws[j] for j in kept])
        )
        if bad:
            j, reason = bad[0]
            raise ValueError(f"training image {paths[int(index[j])]} cannot be decoded ({reason})")
        yield made[0], made[1], index


def device_views(preprocess_cfg: dict) -> tuple[ViewSampler, DeviceViews]:
    """The sampler (for the loader's workers) and the device views of a model's preprocessing config
    (as :func:`s3a.train.augment.training_views` takes it)."""
    size, mean, std = int(preprocess_cfg["size"]), preprocess_cfg["mean"], preprocess_cfg["std"]
    sampler = ViewSampler(size, mean, std, preprocess_cfg.get("interpolation", "bicubic"))
    return sampler, DeviceViews(size, mean, std, sampler.fill)
