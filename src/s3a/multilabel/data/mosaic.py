"""Multi-label sets made here: ``mosaic`` (real single-label photos composed into multi-label
images with known labels, ``MULTILABEL_SPEC.md`` 11.2) and the generated set of the offline demo."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from s3a.data.base import DatasetError, abspath, is_image, list_subdirs
from s3a.multilabel.data.tables import (
    LAYOUT_PROBS,
    LAYOUTS,
    MOSAIC_JPEG_QUALITY,
    ImageRecord,
    MultiLabelData,
    assemble,
)

log = logging.getLogger(__name__)


def cover_resize(photo: Image.Image, width: int, height: int) -> Image.Image:
    """Resize (bicubic) to cover ``width x height`` and centre-crop to it."""
    scale = max(width / photo.width, height / photo.height)
    w, h = max(width, round(photo.width * scale)), max(height, round(photo.height * scale))
    resized = photo.resize((w, h), Image.BICUBIC)
    left, top = (w - width) // 2, (h - height) // 2
    return resized.crop((left, top, left + width, top + height))


def _compose(regions, photos: Sequence[Image.Image], canvas: int) -> Image.Image:
    cell = canvas // 2
    out = Image.new("RGB", (canvas, canvas))
    for (x0, y0, x1, y1), photo in zip(regions, photos, strict=True):
        box = (x0 * cell, y0 * cell, x1 * cell, y1 * cell)
        out.paste(cover_resize(photo, box[2] - box[0], box[3] - box[1]), box[:2])
    return out


def _stamped(folder: Path, params: dict, files: Sequence[Path]) -> bool:
    stamp = folder / ".mosaic.json"
    try:
        return json.loads(stamp.read_text()) == params and all(f.is_file() for f in files)
    except (OSError, ValueError):
        return False


def _draw_layouts(rng: np.random.Generator, n: int, k: int, probs: Sequence[float]):
    names = list(LAYOUTS)
    for _ in range(n):
        layout = names[int(rng.choice(len(names), p=probs))]
        regions = LAYOUTS[layout]
        yield regions, [int(v) for v in rng.choice(k, len(regions), replace=False)]


def _composed(
    dataset: str,
    root: str,
    names: Sequence[str],
    wnids: Sequence[str | None],
    draws: list,
    paint,
    canvas: int,
    params: dict,
    prompt_style: str = "readable",
) -> MultiLabelData:
    """Write (once) the composed images of ``draws`` = ``[(split, i, regions, labels, extra)]``."""
    base = abspath(root)
    files = [base / split / f"mosaic_{i:05d}.jpg" for split, i, *_ in draws]
    cell = canvas // 2
    if not _stamped(base, params, files):
        (base / ".mosaic.json").unlink(missing_ok=True)
        for sub in ("train", "test"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for path, (_, _, regions, labels, extra) in zip(files, draws, strict=True):
            image = _compose(regions, paint(labels, extra, regions), canvas)
            tmp = path.with_name(f".{path.name}.tmp")
            image.save(tmp, format="JPEG", quality=MOSAIC_JPEG_QUALITY)
            os.replace(tmp, path)
        (base / ".mosaic.json").write_text(json.dumps(params, indent=1))
        log.info("%s: composed %d images into %s", dataset, len(files), base)
    records = []
    for path, (split, _, regions, labels, _) in zip(files, draws, strict=True):
        objs = tuple(
            (lab, False, float((x1 - x0) * (y1 - y0) * cell * cell))
            for (x0, y0, x1, y1), lab in zip(regions, labels, strict=True)
        )
        records.append(ImageRecord(str(path), split, objs, float(canvas * canvas)))
    return assemble(dataset, records, names, wnids=wnids, prompt_style=prompt_style)


def _source_photos(source: Path) -> tuple[list[str], list[str | None], list[list[str]]]:
    """Classes of a photo source: a flat folder of ``<wnid>_<name>.<ext>`` files (one photo per
    class, ImageNet-sample style) or a folder of ``<class>/`` sub-folders (every photo of the class)."""
    subdirs = list_subdirs(source)
    if subdirs:
        photos = [sorted(str(source / d / f) for f in os.listdir(source / d) if is_image(f)) for d in subdirs]
        keep = [i for i, p in enumerate(photos) if p]
        return [subdirs[i] for i in keep], [None] * len(keep), [photos[i] for i in keep]
    files = sorted(f for f in os.listdir(source) if is_image(f))
    names, wnids = [], []
    for f in files:
        stem = os.path.splitext(f)[0]
        head, _, rest = stem.partition("_")
        is_wnid = len(head) == 9 and head[0] == "n" and head[1:].isdigit() and rest
        names.append(rest if is_wnid else stem)
        wnids.append(head if is_wnid else None)
    return names, wnids, [[str(source / f)] for f in files]


def build_mosaic(
    root: str,
    source: str,
    classes: int = 20,
    n_train: int = 120,
    n_test: int = 120,
    canvas: int = 672,
    seed: int = 0,
    layout_probs: Sequence[float] = LAYOUT_PROBS,
    prompt_style: str = "readable",
) -> MultiLabelData:
    """Multi-label images composed from real single-label photos, with known labels (spec 11.2).

    ``rng = numpy.random.default_rng(seed)``; the K = ``classes`` classes are
    ``sorted(rng.choice(n_source_classes, K, replace=False))`` over the source's sorted classes.
    Then, per mosaic (train first, then test, one stream): a layout of :data:`LAYOUTS` drawn with
    ``layout_probs``, its regions' labels ``rng.choice(K, n_regions, replace=False)``; each region is
    filled with a photo of its class resized to cover it (bicubic) and centre-cropped. With a
    class-folder source the photo is ``rng.integers(n_photos)`` of that class (drawn after the
    labels); a flat folder (``imagenet-sample``: one photo per class) always gives the class's one
    photo, so train and test mosaics reuse the same photos in new combinations — fine for pipeline
    checks, not a generalisation benchmark. The canvas is 2x2 cells (672 px = 3x3 tiles of exactly
    224 px); JPEG quality 90; files ``<root>/<split>/mosaic_<i:05d>.jpg``; the area of a label is its
    region's. Files are rewritten only when the parameters change; ``prompt_style`` as
    :func:`~s3a.multilabel.data.tables.readable_prompt`.
    """
    dataset = "mosaic"
    src = abspath(source)
    if not src.is_dir():
        raise DatasetError(
            f"{dataset}: no source folder {src}; expected a folder of <wnid>_<name>.JPEG photos "
            "(e.g. ../shared/data/imagenet-sample) or of <class>/ photo folders"
        )
    all_names, all_wnids, all_photos = _source_photos(src)
    if len(all_names) < classes or classes < 4:
        raise DatasetError(
            f"{dataset}: need 4 <= classes <= {len(all_names)} (the classes in {src}), got {classes}"
        )
    if canvas % 2 or canvas < 32:
        raise DatasetError(f"{dataset}: canvas must be an even number of pixels >= 32, got {canvas}")
    probs = np.asarray(layout_probs, dtype=float)
    if probs.shape != (len(LAYOUTS),) or (probs < 0).any() or not np.isclose(probs.sum(), 1.0):
        raise DatasetError(f"{dataset}: layout_probs must be {len(LAYOUTS)} probabilities summing to 1")
    rng = np.random.default_rng(seed)
    chosen = sorted(int(i) for i in rng.choice(len(all_names), classes, replace=False))
    draws = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i, (regions, labels) in enumerate(_draw_layouts(rng, n, classes, probs)):
            picks = [
                int(rng.integers(len(all_photos[chosen[lab]]))) if len(all_photos[chosen[lab]]) > 1 else 0
                for lab in labels
            ]
            draws.append((split, i, regions, labels, picks))

    def paint(labels, picks, regions):
        out = []
        for lab, pick in zip(labels, picks, strict=True):
            with Image.open(all_photos[chosen[lab]][pick]) as img:
                out.append(img.convert("RGB"))
        return out

    params = {
        "source": str(src),
        "classes": classes,
        "n_train": n_train,
        "n_test": n_test,
        "canvas": canvas,
        "seed": seed,
        "layout_probs": [float(p) for p in probs],
        "quality": MOSAIC_JPEG_QUALITY,
    }
    names = [all_names[i] for i in chosen]
    wnids = [all_wnids[i] for i in chosen]
    return _composed(dataset, root, names, wnids, draws, paint, canvas, params, prompt_style)


def build_generated_multilabel(
    root: str,
    classes: Sequence[str] = ("circle", "square", "triangle", "star", "cross", "grid"),
    n_train: int = 60,
    n_test: int = 30,
    canvas: int = 192,
    seed: int = 0,
    prompt_style: str = "readable",
) -> MultiLabelData:
    """The offline demo's multi-label set: 1-4 drawn shapes (:mod:`s3a.data.generated`) per 2x2
    canvas, laid out as :func:`build_mosaic` does (same layouts and probabilities); each region's
    shape is drawn with ``RandomState([seed, split, i, region])``. Files
    ``<root>/<split>/mosaic_<i>.jpg``; ``prompt_style`` as
    :func:`~s3a.multilabel.data.tables.readable_prompt`."""
    from s3a.data.generated import SHAPES, draw_image

    dataset = "generated_multilabel"
    classes = [str(c) for c in classes]
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or len(set(classes)) != len(classes) or len(classes) < 4:
        raise DatasetError(f"{dataset}: need >= 4 distinct shapes of {sorted(SHAPES)}, got {classes}")
    rng = np.random.default_rng(seed)
    draws = []
    for s, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        for i, (regions, labels) in enumerate(_draw_layouts(rng, n, len(classes), LAYOUT_PROBS)):
            draws.append((split, i, regions, labels, (s, i)))
    cell = canvas // 2

    def paint(labels, key, regions):
        out = []
        for r, (lab, (x0, y0, x1, y1)) in enumerate(zip(labels, regions, strict=True)):
            side = max(x1 - x0, y1 - y0) * cell
            out.append(draw_image(classes[lab], np.random.RandomState([seed, key[0], key[1], r]), side))
        return out

    params = {
        "classes": classes,
        "n_train": n_train,
        "n_test": n_test,
        "canvas": canvas,
        "seed": seed,
        "kind": dataset,
    }
    return _composed(
        dataset, root, classes, [None] * len(classes), draws, paint, canvas, params, prompt_style
    )


#: kind -> builder (keyword parameters of the config's ``params``)
