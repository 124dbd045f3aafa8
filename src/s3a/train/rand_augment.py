"""RandAugment on the device: timm's increasing operation set (``rand-m9-mstd0.5-inc1``, spec 6.2) applied
to a uint8 batch, each image with its own operations and arguments (:func:`rand_augment`).

Each operation runs once per layer on the images that drew it, as one batched computation that
follows the Pillow function timm calls: ``ImageOps`` (autocontrast, equalize, invert, posterize,
solarize), timm's solarize-add table, ``ImageEnhance`` (color, contrast, brightness, sharpness: a blend
with the degenerate image, truncated to uint8 as ``Image.blend`` does), and ``Image.transform`` /
``rotate`` (rotate, shear, translate) with bicubic resampling and the mean colour as fill. The point
and colour operations give Pillow's pixels (at most one level off); the geometric ones use torch's
bicubic kernel (``a = -0.75``; Pillow's is ``-0.5``), about a level apart on average. Which images
drew which operation is decided elsewhere (:class:`s3a.train.gpu_views.ViewSampler`).

Cost per layer: at most 15 batched operations over ``B x 3 x H x W`` pixels; the geometric ones build
an ``(n, H, W, 2)`` sampling grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: timm's increasing RandAugment operations (``rand-m9-mstd0.5-inc1``), in timm's order
OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)


# each operation: uint8 (n, 3, H, W) images and (n, k) float64 arguments -> uint8 images


def _truncate(x: torch.Tensor) -> torch.Tensor:
    """Float pixels -> uint8 as Pillow stores them (truncated toward zero, clipped to 0..255)."""
    return x.trunc().clamp_(0, 255).to(torch.uint8)


def _per_image(args: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``(n,)`` arguments as ``(n, 1, 1, 1)`` float32 on the images' device."""
    return args.to(images.device, torch.float32).view(-1, 1, 1, 1)


def _blend(degenerate: torch.Tensor, images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance``'s ``Image.blend(degenerate, image, factor)``."""
    factor = _per_image(factor, images)
    degenerate = degenerate.float()
    return _truncate(degenerate + factor * (images.float() - degenerate))


def _luminance(images: torch.Tensor) -> torch.Tensor:
    """Pillow's ``convert("L")``: ``(n, 1, H, W)`` int, ``(R 19595 + G 38470 + B 7471 + 2^15) >> 16``."""
    r, g, b = images.long().unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).unsqueeze(1)


def _autocontrast(images: torch.Tensor, _args: torch.Tensor, _fill) -> torch.Tensor:
    # in float64, as Pillow computes its table: lut[i] = int(i * scale - lo * scale)
    lo = images.amin((2, 3), keepdim=True).double()
    hi = images.amax((2, 3), keepdim=True).double()
    scale = 255.0 / (hi - lo).clamp_min(1)
    stretched = _truncate(images.double() * scale - lo * scale)
    return torch.where(hi > lo, stretched, images)


def _equalize(images: torch.Tensor, _args: torch.Tensor, _fill) -> torch.Tensor:
    n, c, h, w = images.shape
    flat = images.reshape(n * c, h * w).long()
    hist = torch.zeros((n * c, 256), dtype=torch.long, device=images.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    # Pillow: step = (pixels - count of the last non-empty level) // 255; lut[i] = (step // 2 + the
    # count below i) // step; no change when step is 0 (at most one level used, or too few pixels)
    levels = torch.arange(256, device=images.device)
    last = torch.where(hist > 0, levels, -1).amax(1, keepdim=True)
    step = (h * w - hist.gather(1, last.clamp_min(0))) // 255
    below = hist.cumsum(1) - hist
    lut = ((step // 2 + below) // step.clamp_min(1)).clamp_(max=255)
    lut = torch.where(step > 0, lut, levels)
    return lut.gather(1, flat).to(torch.uint8).view(n, c, h, w)


def _invert(images: torch.Tensor, _args: torch.Tensor, _fill) -> torch.Tensor:
    return 255 - images


def _posterize(images: torch.Tensor, args: torch.Tensor, _fill) -> torch.Tensor:
    bits = args[:, 0].long().clamp(0, 8)  # 0 bits: a black image, as Pillow < 11 gave
    masks = ((0xFF << (8 - bits)) & 0xFF).to(torch.uint8)
    return images & masks.to(images.device).view(-1, 1, 1, 1)


def _solarize(images: torch.Tensor, args: torch.Tensor, _fill) -> torch.Tensor:
    return torch.where(images >= _per_image(args[:, 0], images), 255 - images, images)


def _solarize_add(images: torch.Tensor, args: torch.Tensor, _fill) -> torch.Tensor:
    added = (images.float() + _per_image(args[:, 0], images)).clamp_(max=255).to(torch.uint8)
    return torch.where(images < 128, added, images)


def _color(images: torch.Tensor, args: torch.Tensor, _fill) -> torch.Tensor:
    return _blend(_luminance(images).expand_as(images), images, args[:, 0])


def _contrast(images: torch.Tensor, args: torch.Tensor, _fill) -> torch.Tensor:
    mean = (_luminance(images).float().mean((2, 3), keepdim=True) + 0.5).trunc()
    return _blend(mean.expand_as(images), images, args[:, 0])


def _brightness(images: torch.Tensor, args: torch.Tensor, _fill) -> torch.Tensor:
    return _blend(torch.zeros_like(images), images, args[:, 0])


def _sharpness(images: torch.Tensor, args: torch.Tensor, _fill) -> torch.Tensor:
    # ImageFilter.SMOOTH: [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 inside, the border pixels unchanged
    kernel = torch.ones((3, 1, 3, 3), device=images.device)
    kernel[:, :, 1, 1] = 5
    smooth = F.conv2d(images.float(), kernel / 13, groups=3)
    degenerate = images.clone()
    degenerate[:, :, 1:-1, 1:-1] = (smooth + 0.5).trunc().clamp_(0, 255).to(torch.uint8)
    return _blend(degenerate, images, args[:, 0])


def _affine(images: torch.Tensor, matrices: torch.Tensor, fill: Sequence[int]) -> torch.Tensor:
    """Pillow's ``Image.transform(AFFINE)`` with bicubic resampling and a fill colour, batched.

    ``matrices`` ``(n, 2, 3)`` map an output position to the input position it takes its value from
    (``x_in = a x + b y + c``, ``y_in = d x + e y + f``), in Pillow's continuous coordinates (pixel
    ``i`` spans ``[i, i + 1]``, sampled at its centre); a pixel whose source lies outside the image
    gets ``fill``.
    """
    n, _, h, w = images.shape
    dev = images.device
    ys, xs = torch.meshgrid(
        torch.arange(h, device=dev, dtype=torch.float64) + 0.5,
        torch.arange(w, device=dev, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    points = torch.stack([xs, ys, torch.ones_like(xs)], -1)  # (H, W, 3)
    source = torch.einsum("hwk,nik->nhwi", points, matrices.to(dev, torch.float64))  # (n, H, W, 2)
    grid = (source / torch.tensor([w, h], device=dev, dtype=torch.float64) * 2 - 1).float()
    sampled = F.grid_sample(images.float(), grid, mode="bicubic", padding_mode="border", align_corners=False)
    inside = ((source >= 0) & (source < torch.tensor([w, h], device=dev))).all(-1).unsqueeze(1)
    colour = torch.tensor(fill, device=dev, dtype=torch.float32).view(1, 3, 1, 1)
    return (torch.where(inside, sampled, colour) + 0.5).trunc().clamp_(0, 255).to(torch.uint8)


def _rows(*columns: torch.Tensor) -> torch.Tensor:
    """``(n, 2, 3)`` matrices from six ``(n,)`` columns ``a, b, c, d, e, f``."""
    return torch.stack(columns, 1).view(-1, 2, 3)


def _rotate(images: torch.Tensor, args: torch.Tensor, fill) -> torch.Tensor:
    # Pillow's rotate(degrees): counter-clockwise about the centre (w / 2, h / 2), same size
    _, _, h, w = images.shape
    angle = -torch.deg2rad(args[:, 0].double() % 360.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = w / 2.0, h / 2.0
    c = cos * -cx + sin * -cy + cx
    f = -sin * -cx + cos * -cy + cy
    return _affine(images, _rows(cos, sin, c, -sin, cos, f), fill)


def _shear_x(images: torch.Tensor, args: torch.Tensor, fill) -> torch.Tensor:
    one, zero = torch.ones_like(args[:, 0]), torch.zeros_like(args[:, 0])
    return _affine(images, _rows(one, args[:, 0], zero, zero, one, zero), fill)


def _shear_y(images: torch.Tensor, args: torch.Tensor, fill) -> torch.Tensor:
    one, zero = torch.ones_like(args[:, 0]), torch.zeros_like(args[:, 0])
    return _affine(images, _rows(one, zero, zero, args[:, 0], one, zero), fill)


def _translate_x(images: torch.Tensor, args: torch.Tensor, fill) -> torch.Tensor:
    one, zero = torch.ones_like(args[:, 0]), torch.zeros_like(args[:, 0])
    return _affine(images, _rows(one, zero, args[:, 0] * images.shape[3], zero, one, zero), fill)


def _translate_y(images: torch.Tensor, args: torch.Tensor, fill) -> torch.Tensor:
    one, zero = torch.ones_like(args[:, 0]), torch.zeros_like(args[:, 0])
    return _affine(images, _rows(one, zero, zero, zero, one, args[:, 0] * images.shape[2]), fill)


#: operation name -> its batched implementation
APPLY = dict(
    zip(
        OPS,
        (
            _autocontrast,
            _equalize,
            _invert,
            _rotate,
            _posterize,
            _solarize,
            _solarize_add,
            _color,
            _contrast,
            _brightness,
            _sharpness,
            _shear_x,
            _shear_y,
            _translate_x,
            _translate_y,
        ),
        strict=True,
    )
)


def rand_augment(
    images: torch.Tensor, ops: Sequence[Sequence[tuple[str, tuple[float, ...]]]], fill: Sequence[int]
) -> torch.Tensor:
    """Apply each image's RandAugment operations (``ops[i]``, in order) to uint8 ``(B, 3, H, W)``
    ``images``: for each layer, every operation once, on the images that drew it there."""
    out = images.clone()
    for layer in range(max((len(o) for o in ops), default=0)):
        groups: dict[str, list[tuple[int, tuple[float, ...]]]] = {}
        for i, image_ops in enumerate(ops):
            if len(image_ops) > layer:
                name, args = image_ops[layer]
                groups.setdefault(name, []).append((i, args))
        for name, members in groups.items():
            index = torch.tensor([i for i, _ in members], device=images.device)
            args = torch.tensor([list(a) or [0.0] for _, a in members], dtype=torch.float64)
            out[index] = APPLY[name](out[index], args, fill)
    return out
