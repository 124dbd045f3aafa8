"""Benchmark: image embedding end to end from JPEG files, the fast decoder vs the PIL path, one process.

Both contenders run :func:`s3a.embed.encode_images` on the same files with the same model, batch size
and loader workers; only ``EmbedParams.decoder`` differs: ``pil`` (PIL decode + the model's own
transform, spec 3) or ``fast`` (libjpeg-turbo via torchvision, tensor resize in the workers, uint8
batches normalised on the device). It also reports the mean cosine similarity of the two paths'
embeddings on the first 200 files (the agreement the fast path promises, >= 0.99).

Images are real ImageNet photos (``../shared/data/imagenet-sample``) replicated to ``--images``.

    python benchmarks/bench_embed.py                                   # tiny model on the CPU: decoding-bound
    python benchmarks/bench_embed.py --arch ViT-B-16 --images 50000 --batch-size 512 --workers 15   # a GPU
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from s3a.embed import EmbedParams, encode_images
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
    return len(paths) / (time.perf_counter() - start), result.embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default=TINY_ARCH)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--image-dir", default=str(DEFAULT_IMAGES))
    args = parser.parse_args()

    clip = load_clip(ModelSpec(args.arch, None))
    files = sorted(str(p) for p in Path(args.image_dir).glob("*.JPEG"))
    if not files:
        raise SystemExit(f"no JPEG files in {args.image_dir}")
    paths = [files[i % len(files)] for i in range(args.images)]
    run(clip, paths[: args.batch_size], "pil", args)  # warm-up: allocator, kernels, page cache
    pil, pil_emb = run(clip, paths, "pil", args)
    fast, fast_emb = run(clip, paths, "fast", args)
    n = min(200, len(files), len(paths))
    cosine = float(np.mean(np.sum(pil_emb[:n] * fast_emb[:n], axis=1)))
    device = torch.cuda.get_device_name(clip.device) if clip.device.type == "cuda" else "cpu"
    print(
        f"device: {device}; {args.arch}; {args.images} JPEGs; batch {args.batch_size}; {args.workers} workers"
    )
    print(f"PIL path (baseline): {pil:8.1f} img/s")
    print(f"fast decoder (ours): {fast:8.1f} img/s")
    print(f"ratio ours / baseline: {fast / pil:.2f}; mean cosine of the embeddings: {cosine:.5f}")


if __name__ == "__main__":
    main()
