"""Benchmark: image embedding end to end from JPEG files, our decoders vs the PIL path, one process.

Every contender runs :func:`s3a.embed.encode_images` on the same files with the same model, batch
size and loader workers; only ``EmbedParams.decoder`` differs: ``pil`` (the baseline: PIL decode + the
model's own transform in the workers, spec 3), ``fast`` (reduced-scale JPEG decoding and tensor resize
in the workers) and ``gpu`` (workers read bytes; nvJPEG batch decoding, resize and crop on the GPU).
It also prints each decoder's mean and minimum cosine similarity to the ``pil`` embeddings.

Images are real ImageNet photos (``../shared/data/imagenet-sample``); ``--copies-dir`` writes them
as ``--images`` distinct files (so the page cache holds every file once, as in a real run),
otherwise the list of paths repeats the originals.

    python benchmarks/bench_embed.py                                       # tiny model on the CPU
    python benchmarks/bench_embed.py --arch ViT-B-16 --images 20000 --batch-size 512 --workers 15 \\
        --decoders pil,fast,gpu --copies-dir /tmp/jpegs                     # a GPU node
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from s3a.embed import DECODERS, EmbedParams, encode_images
from s3a.models import TINY_ARCH, ModelSpec, load_clip

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def run(clip, paths: list[str], decoder: str, args) -> tuple[float, np.ndarray]:
    params = EmbedParams(batch_size=args.batch_size, num_workers=args.workers, decoder=decoder)
    if clip.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = encode_images(clip.model, clip.preprocess, paths, params)
    if clip.device.type == "cuda":
        torch.cuda.synchronize()
    assert len(result.index) == len(paths), f"{len(paths) - len(result.index)} images failed"
    return len(paths) / (time.perf_counter() - start), result.embeddings


def image_paths(source: Path, n: int, copies_dir: str | None) -> list[str]:
    """``n`` paths of real photos: distinct copies in ``copies_dir``, or the originals repeated."""
    files = sorted(source.glob("*.JPEG"))
    if not files:
        raise SystemExit(f"no JPEG files in {source}")
    if not copies_dir:
        return [str(files[i % len(files)]) for i in range(n)]
    out = Path(copies_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        target = out / f"{i:07d}.JPEG"
        if not target.exists():
            shutil.copyfile(files[i % len(files)], target)
        paths.append(str(target))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default=TINY_ARCH)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--image-dir", default=str(DEFAULT_IMAGES))
    parser.add_argument("--copies-dir", default=None, help="write the images as distinct files here")
    parser.add_argument("--decoders", default="pil,fast", help=f"comma-separated, from {DECODERS}")
    args = parser.parse_args()
    decoders = args.decoders.split(",")
    if "pil" not in decoders:
        decoders.insert(0, "pil")

    clip = load_clip(ModelSpec(args.arch, None))
    paths = image_paths(Path(args.image_dir), args.images, args.copies_dir)
    for decoder in decoders:  # warm-up: allocator, kernels, nvJPEG handles, page cache
        run(clip, paths[: 2 * args.batch_size], decoder, args)
    rates, embeddings = {}, {}
    for decoder in decoders:
        rates[decoder], embeddings[decoder] = run(clip, paths, decoder, args)
    device = torch.cuda.get_device_name(clip.device) if clip.device.type == "cuda" else "cpu"
    print(
        f"device: {device}; {args.arch}; {args.images} JPEG files; batch {args.batch_size}; "
        f"{args.workers} loader workers"
    )
    n = min(1000, len(paths))
    for decoder in decoders:
        cosine = np.sum(embeddings["pil"][:n] * embeddings[decoder][:n], axis=1)
        role = "baseline" if decoder == "pil" else "ours"
        print(
            f"{decoder:5s} ({role:8s}): {rates[decoder]:8.1f} img/s"
            f"   ratio to pil {rates[decoder] / rates['pil']:5.2f}"
            f"   cosine to pil mean {cosine.mean():.5f} min {cosine.min():.5f}"
        )


if __name__ == "__main__":
    main()
