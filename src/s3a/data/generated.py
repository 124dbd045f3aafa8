"""The demo dataset the project makes itself: simple shapes drawn with PIL, saved as JPEG files.

Layout written::

    <root>/<class>/<NNNN>.jpg          NNNN = 0000 .. images_per_class-1
    <root>/.generated.json             the parameters the files were made with

Every image is drawn from its own ``np.random.RandomState([seed, crc32(class name), image number])``
(random colours, position, size, rotation, background and pixel noise), so the files are
byte-identical across runs with the same parameters. When the stamp file matches the parameters and
every file exists, nothing is redrawn.

Class names are vocabulary names (WordNet head lemmas), so the pipeline can name the clusters.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from s3a.io import atomic_path

from .base import DatasetError, abspath, make_manifest, seeded_split

__all__ = ["SHAPES", "DEFAULT_CLASSES", "draw_image", "build_generated"]

log = logging.getLogger(__name__)

STAMP = ".generated.json"
JPEG_QUALITY = 92

Point = tuple[float, float]
#: shape name -> painter(draw, rng, centre, radius, angle, colour, size)
Painter = Callable[
    [ImageDraw.ImageDraw, np.random.RandomState, Point, float, float, tuple[int, int, int], int], None
]


def _rotate(points: Sequence[Point], centre: Point, angle: float) -> list[Point]:
    cx, cy = centre
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def _circle(draw, rng, centre, r, angle, colour, size) -> None:
    cx, cy = centre
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)


def _square(draw, rng, centre, r, angle, colour, size) -> None:
    h = r / math.sqrt(2) * 1.2
    draw.polygon(_rotate([(-h, -h), (h, -h), (h, h), (-h, h)], centre, angle), fill=colour)


def _triangle(draw, rng, centre, r, angle, colour, size) -> None:
    pts = [(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))]
    draw.polygon(_rotate(pts, centre, angle), fill=colour)


def _star(draw, rng, centre, r, angle, colour, size) -> None:
    pts = []
    for k in range(10):
        rad = r if k % 2 == 0 else r * 0.4
        a = -math.pi / 2 + k * math.pi / 5
        pts.append((rad * math.cos(a), rad * math.sin(a)))
    draw.polygon(_rotate(pts, centre, angle), fill=colour)


def _cross(draw, rng, centre, r, angle, colour, size) -> None:
    w = r * 0.3
    arms = [
        (-w, -r),
        (w, -r),
        (w, -w),
        (r, -w),
        (r, w),
        (w, w),
        (w, r),
        (-w, r),
        (-w, w),
        (-r, w),
        (-r, -w),
        (-w, -w),
    ]
    draw.polygon(_rotate(arms, centre, angle), fill=colour)


def _grid(draw, rng, centre, r, angle, colour, size) -> None:
    period = max(8.0, size / float(rng.randint(3, 6)))
    width = max(2.0, period * 0.25)
    reach = size * 1.5
    offset = float(rng.uniform(0, period))
    middle = (size / 2, size / 2)
    k = -reach
    while k < reach:
        x = k + offset
        for turn in (0.0, math.pi / 2):
            band = [(x, -reach), (x + width, -reach), (x + width, reach), (x, reach)]
            draw.polygon(_rotate(band, middle, angle + turn), fill=colour)
        k += period


def _ring(draw, rng, centre, r, angle, colour, size) -> None:
    cx, cy = centre
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=max(2, int(r * 0.3)))


SHAPES: dict[str, Painter] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "cross": _cross,
    "grid": _grid,
    "ring": _ring,
}
DEFAULT_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "grid")


def draw_image(shape: str, rng: np.random.RandomState, image_size: int) -> Image.Image:
    """One ``image_size`` x ``image_size`` RGB picture of ``shape`` drawn with ``rng``."""
    background = rng.randint(0, 256, size=3)
    # a foreground colour far from the background
    foreground = (background + rng.randint(96, 160, size=3)) % 256
    img = Image.new("RGB", (image_size, image_size), tuple(int(v) for v in background))
    draw = ImageDraw.Draw(img)
    radius = float(rng.uniform(0.22, 0.38) * image_size)
    margin = radius * 0.8
    centre = (
        float(rng.uniform(margin, image_size - margin)),
        float(rng.uniform(margin, image_size - margin)),
    )
    angle = float(rng.uniform(0, 2 * math.pi))
    SHAPES[shape](draw, rng, centre, radius, angle, tuple(int(v) for v in foreground), image_size)
    pixels = np.asarray(img, dtype=np.float32)
    pixels += rng.normal(0.0, 12.0, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _save_jpeg_atomic(img: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp, format="JPEG", quality=JPEG_QUALITY)


def build_generated(
    root: str,
    classes: Sequence[str] = DEFAULT_CLASSES,
    images_per_class: int = 40,
    image_size: int = 96,
    seed: int = 0,
    test_fraction: float = 0.25,
) -> pd.DataFrame:
    """Generate (once) and list the demo dataset of drawn shapes.

    Layout: ``<root>/<class>/<NNNN>.jpg`` (see the module docstring).

    Args:
        root: output folder (created).
        classes: shape names, a subset of :data:`SHAPES` (``circle``, ``square``, ``triangle``, ``star``,
            ``cross``, ``grid``, ``ring``).
        images_per_class: images drawn per class.
        image_size: side of the square images in pixels.
        seed: seed of the drawings and of the per-class split.
        test_fraction: share of each class in the test split (rule of :func:`s3a.data.base.seeded_split`).
    """
    dataset = "generated"
    classes = [str(c) for c in classes]
    unknown = [c for c in classes if c not in SHAPES]
    if unknown:
        raise DatasetError(f"{dataset}: unknown shape(s) {unknown}; available: {sorted(SHAPES)}")
    if len(set(classes)) != len(classes) or not classes:
        raise DatasetError(f"{dataset}: classes must be distinct and non-empty, got {classes}")
    if images_per_class < 1 or image_size < 16:
        raise DatasetError(f"{dataset}: need images_per_class >= 1 and image_size >= 16")
    base = abspath(root)
    params = {
        "classes": classes,
        "images_per_class": int(images_per_class),
        "image_size": int(image_size),
        "seed": int(seed),
        "jpeg_quality": JPEG_QUALITY,
    }
    paths = {c: [base / c / f"{i:04d}.jpg" for i in range(images_per_class)] for c in classes}
    stamp = base / STAMP
    try:
        current = json.loads(stamp.read_text()) == params
    except (OSError, ValueError):
        current = False
    complete = current and all(p.is_file() for ps in paths.values() for p in ps)
    if complete:
        log.info("%s: %s already holds the %d images", dataset, base, len(classes) * images_per_class)
    else:
        stamp.unlink(missing_ok=True)
        total = len(classes) * images_per_class
        with tqdm(total=total, desc=f"{dataset}: drawing", unit="img", leave=False) as bar:
            for name in classes:
                (base / name).mkdir(parents=True, exist_ok=True)
                for i, path in enumerate(paths[name]):
                    rng = np.random.RandomState([int(seed), zlib.crc32(name.encode()), i])
                    _save_jpeg_atomic(draw_image(name, rng, int(image_size)), path)
                    bar.update()
        stamp.write_text(json.dumps(params, indent=1))
        log.info("%s: drew %d images into %s", dataset, total, base)
    rows: list[tuple[str, str, str]] = []
    for name in classes:
        files = [str(p) for p in paths[name]]
        rows.extend(
            zip(files, seeded_split(len(files), test_fraction, seed), [name] * len(files), strict=True)
        )
    return make_manifest(rows, {c: (c, None) for c in classes}, dataset)
