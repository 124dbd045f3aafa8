"""The training views made on the device (train.augment: gpu), run here on CPU tensors: the same draws as
the CPU views for a seed, each RandAugment operation as Pillow computes it, and views that agree with
the CPU path's pixel for pixel within a few levels, one image at a time and in distribution."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from s3a.decode import pil_pixels
from s3a.train.augment import _patch_timm_posterize, training_views
from s3a.train.gpu_views import ViewDraws, device_views
from s3a.train.preempt import seeded
from s3a.train.rand_augment import APPLY, OPS, rand_augment

CFG = {"size": 64, "mean": (0.48145466, 0.4578275, 0.40821073), "std": (0.26862954, 0.26130258, 0.27577711)}
MEAN, STD = torch.tensor(CFG["mean"]).view(3, 1, 1), torch.tensor(CFG["std"]).view(3, 1, 1)


def _levels(view: torch.Tensor) -> torch.Tensor:
    """A normalised CPU view back in 0..255 levels."""
    return (view * STD + MEAN).mul(255).round().clamp(0, 255)


def _recording_cpu_views():
    """The CPU path's views; its random crops note ``("weak" | "crop", params)`` and its RandAugment
    operations ``(name, args)`` as they draw and run."""
    weak, strong = training_views(CFG)
    record: list = []
    for name, step in (("weak", weak.transforms[1]), ("crop", strong.transforms[0])):
        real_params = step.get_params  # a static method, called through the instance

        def noting_params(*args, _name=name, _real=real_params):
            params = _real(*args)
            record.append((_name, tuple(int(v) for v in params)))
            return params

        step.get_params = noting_params
    randaug = next(t for t in strong.transforms if type(t).__name__ == "RandAugment")
    for op in randaug.ops:
        real = op.aug_fn

        def noting(image, *args, _name=op.name, _real=real, **kwargs):
            record.append((_name, tuple(float(a) for a in args)))
            return _real(image, *args, **kwargs)

        op.aug_fn = noting
    return weak, strong, record


@pytest.fixture(scope="module")
def photos(shared_data) -> list[Image.Image]:
    paths = sorted((shared_data / "imagenet-sample").glob("*.JPEG"))[:12]
    if not paths:
        pytest.skip("no imagenet-sample photos")
    return [Image.open(p).convert("RGB") for p in paths]


def _noise_images(n: int = 5, h: int = 40, w: int = 56) -> list[Image.Image]:
    """Seeded images with smooth gradients, flat areas and noise (every operation has work to do)."""
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 128 / (w + h)], -1)
        base[: h // 3, : w // 3] = 40 * i  # a flat patch
        pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels))
    return images


def test_the_draws_are_the_cpu_views_draws_for_a_seed():
    """Under the same per-sample seed, the sampler chooses the crops, operations and arguments the CPU
    views apply, in the same order (the weak view's crop drawn first, as the CPU path does)."""
    sampler, _ = device_views(CFG)
    weak, strong, record = _recording_cpu_views()
    image = _noise_images(1, 90, 120)[0]
    for seed in range(150):
        record.clear()
        with seeded(seed):
            weak(image), strong(image)
        with seeded(seed):
            draws = sampler.draw(*image.size)
        assert isinstance(draws, ViewDraws)
        (_, weak_box), (_, crop), *ops = record
        assert draws.weak == weak_box[:2] and draws.crop == crop, seed
        assert list(draws.ops) == ops, seed


@pytest.mark.slow  # 2,000 draws
def test_the_drawn_arguments_span_the_spec_ranges():
    """RandAugment m9, magnitude std 0.5, two layers of probability 0.5, the increasing set: each
    operation's arguments lie in its range, the magnitudes centre on 9, the choice is uniform."""
    sampler, _ = device_views(CFG)
    ops, counts = [], Counter()
    for seed in range(2000):
        with seeded(seed):
            draws = sampler.draw(80, 60)
        ops += draws.ops
        counts[len(draws.ops)] += 1
        top, left, height, width = draws.crop
        assert 0.3 * 4800 * 0.8 <= height * width <= 4800 and top + height <= 60 and left + width <= 80
        assert draws.weak[0] == 0 and 0 <= draws.weak[1] <= 85 - 64  # 80 x 60 resized to 85 x 64
    # two layers, each applied with probability 0.5: 0, 1, 2 operations in 1 : 2 : 1
    assert abs(counts[0] / 2000 - 0.25) < 0.03 and abs(counts[1] / 2000 - 0.5) < 0.03
    by_name: dict[str, list[float]] = {}
    for name, args in ops:
        by_name.setdefault(name, []).append(args[0] if args else 0.0)
    assert set(by_name) == set(OPS)
    assert max(len(v) for v in by_name.values()) / min(len(v) for v in by_name.values()) < 1.5
    magnitude = {  # each argument back on the 0-10 magnitude scale
        "Rotate": lambda a: abs(a) / 3,
        "ShearX": lambda a: abs(a) / 0.03,
        "TranslateXRel": lambda a: abs(a) / 0.045,
        "ColorIncreasing": lambda a: abs(a - 1) / 0.09,
        "SolarizeAdd": lambda a: a / 11,
    }
    for name, to_level in magnitude.items():
        levels = np.array([to_level(a) for a in by_name[name]])
        assert levels.min() >= 6.4 and levels.max() <= 10 + 1e-9, name
        assert abs(levels.mean() - 9) < 0.25 and 0.25 < levels.std() < 0.7, name
    assert set(by_name["PosterizeIncreasing"]) <= {0.0, 1.0, 2.0}  # 4 - int(m / 10 * 4)
    assert min(by_name["SolarizeIncreasing"]) >= 0 and max(by_name["SolarizeIncreasing"]) <= 256


CASES = {
    "AutoContrast": [()],
    "Equalize": [()],
    "Invert": [()],
    "PosterizeIncreasing": [(0,), (1,), (2,)],  # timm passes integers to these three
    "SolarizeIncreasing": [(0,), (26,), (256,)],
    "SolarizeAdd": [(99,)],
    "ColorIncreasing": [(0.19,), (1.81,)],
    "ContrastIncreasing": [(0.19,), (1.81,)],
    "BrightnessIncreasing": [(0.19,), (1.81,)],
    "SharpnessIncreasing": [(0.19,), (1.81,)],
    "Rotate": [(25.0,), (-13.5,)],
    "ShearX": [(0.27,), (-0.3,)],
    "ShearY": [(0.27,)],
    "TranslateXRel": [(0.4,), (-0.2,)],
    "TranslateYRel": [(0.41,)],
}
#: resampled operations: Pillow's bicubic kernel (a = -0.5) against torch's (a = -0.75)
GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}


@pytest.mark.parametrize("name", OPS)
def test_each_operation_computes_what_pillow_computes(name):
    """Each batched operation against the Pillow function timm calls, on the same images: the point
    and colour operations to the level (at most 1 off, in under 1 % of pixels), the geometric ones
    (torch's bicubic kernel, not Pillow's) about a level apart on average, with the fill colour where
    the source is outside."""
    from timm.data import auto_augment

    _patch_timm_posterize()
    images = _noise_images()
    batch = torch.stack([pil_pixels(i) for i in images])
    fill = (123, 117, 104)
    for args in CASES[name]:
        pillow = auto_augment.NAME_TO_OP[name]
        expected = torch.stack(
            [pil_pixels(pillow(i, *args, fillcolor=fill, resample=Image.BICUBIC)) for i in images]
        )
        ours = APPLY[name](batch.clone(), torch.tensor([list(args) or [0.0]] * len(images)), fill)
        assert ours.dtype == torch.uint8 and ours.shape == batch.shape
        diff = (ours.int() - expected.int()).abs()
        if name in GEOMETRIC:
            # measured on these noisy images: 0.7-1.24 levels on average, none over 10, 0.01 % over 8;
            # a turn the other way or a shifted grid is tens of levels off
            mean = diff.float().mean()
            assert mean < 1.5 and (diff > 8).float().mean() < 0.001, (args, mean)
            # a corner whose source is outside the image: any corner of a turn; the right column of a
            # shift to the left (the source lies right of the image), the left one of a shift right
            corner = ours[:, :, 0, -1 if name == "TranslateXRel" and args[0] > 0 else 0]
            if name in ("Rotate", "TranslateXRel"):
                assert (corner == torch.tensor(fill, dtype=torch.uint8)).all(), (args, corner)
        else:
            assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01, (args, diff.max())


def test_operations_apply_per_image_in_each_images_order():
    """Images of one batch take their own operations and arguments, layer by layer, in order."""
    images = torch.stack([pil_pixels(i) for i in _noise_images(3)])
    ops = [
        (("Invert", ()), ("PosterizeIncreasing", (1.0,))),
        (("PosterizeIncreasing", (1.0,)), ("Invert", ())),
        (),
    ]
    out = rand_augment(images, ops, (0, 0, 0))
    posterize = APPLY["PosterizeIncreasing"]
    one = torch.tensor([[1.0]])
    assert torch.equal(out[0], posterize(255 - images[:1], one, None)[0])
    assert torch.equal(out[1], 255 - posterize(images[1:2], one, None)[0])
    assert torch.equal(out[2], images[2])


def test_views_agree_with_the_cpu_views_image_by_image(photos):
    """Real photos, the same seeds: the device's weak and strong views against the CPU path's (Pillow
    and timm), in 0..255 levels. Measured: weak 0.09 levels apart on average, strong 0.25 (1.2 at
    most); a different crop, flip or operation would be tens of levels apart."""
    sampler, views = device_views(CFG)
    weak, strong, _ = _recording_cpu_views()
    weak_diff, strong_diff = [], []
    for k, image in enumerate(photos):
        for seed in range(3):
            with seeded(100 * k + seed):
                cpu_weak, cpu_strong = weak(image), strong(image)
            with seeded(100 * k + seed):
                draws = sampler.draw(*image.size)
            ours_weak, ours_strong = views.pixels([pil_pixels(image)], [draws])
            weak_diff.append(float((_levels(cpu_weak) - ours_weak[0].float()).abs().mean()))
            strong_diff.append(float((_levels(cpu_strong) - ours_strong[0].float()).abs().mean()))
    assert np.mean(weak_diff) < 0.5 and max(weak_diff) < 1.0, weak_diff
    assert np.mean(strong_diff) < 1.0 and max(strong_diff) < 4.0, strong_diff


@pytest.mark.slow  # 300 views each way
def test_view_statistics_agree_with_the_cpu_views_over_many_draws(photos):
    """Over many draws the pixel statistics of the two paths' strong views agree: the mean and the
    spread of the per-view mean and standard deviation, within half a level."""
    sampler, views = device_views(CFG)
    _, strong, _ = _recording_cpu_views()
    cpu, ours = [], []
    for k, image in enumerate(photos[:6]):
        pixels = pil_pixels(image)
        for seed in range(25):
            with seeded(7919 * k + seed):
                cpu.append(_levels(strong(image)))
            with seeded(7919 * k + seed):
                ours.append(views.pixels([pixels], [sampler.draw(*image.size)])[1][0].float())
    for stat in (lambda v: v.mean(), lambda v: v.std()):
        a = np.array([float(stat(v)) for v in cpu])
        b = np.array([float(stat(v)) for v in ours])
        assert abs(a.mean() - b.mean()) < 0.5 and abs(a.std() - b.std()) < 0.5, (a.mean(), b.mean())


def test_model_inputs_have_the_cpu_views_shape_and_range(photos):
    """Normalised float (B, 3, size, size) views, within the normalised image of 0..255."""
    sampler, views = device_views(CFG)
    images = [pil_pixels(i) for i in photos[:4]]
    with seeded(3):
        draws = [sampler.draw(int(i.shape[2]), int(i.shape[1])) for i in images]
    weak, strong = views(images, draws)
    lo, hi = (0 - MEAN) / STD, (1 - MEAN) / STD
    for view in (weak, strong):
        assert view.shape == (4, 3, 64, 64) and view.dtype == torch.float32
        assert (view >= lo.view(1, 3, 1, 1) - 1e-5).all() and (view <= hi.view(1, 3, 1, 1) + 1e-5).all()


@pytest.mark.gpu
def test_views_on_cuda_equal_the_views_on_the_cpu(photos):
    """The same draws on CUDA and on the CPU: within a level (interpolation and sampling kernels of the
    two devices round differently), the same operations wherever they apply."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    sampler, views = device_views(CFG)
    images = [pil_pixels(i) for i in photos]
    with seeded(11):
        draws = [sampler.draw(int(i.shape[2]), int(i.shape[1])) for i in images]
    on_cpu = views.pixels(images, draws)
    on_cuda = views.pixels([i.cuda() for i in images], draws)
    for cpu_view, cuda_view in zip(on_cpu, on_cuda, strict=True):
        diff = (cpu_view.int() - cuda_view.cpu().int()).abs().float()
        assert diff.mean() < 0.5 and (diff > 8).float().mean() < 0.001, diff.mean()
