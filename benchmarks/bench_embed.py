"""Benchmark: image embedding end to end from JPEG files, our decoders vs the PIL path, one process.

Every contender runs :func:`s3a.embed.encode_images` on the same files with the same model, batch
size and loader workers; only ``EmbedParams.decoder`` differs: ``pil`` (the baseline: PIL decode + the
model's own transform in the workers, spec 3), ``fast`` (reduced-scale JPEG decoding and tensor resize
in the workers) and ``gpu`` (workers read bytes; batched JPEG decoding, resize and crop on the GPU;
``gpu:nvimgcodec`` and ``gpu:torchvision`` choose its JPEG library; the batches are decoded ahead
in a background thread, and a third part ``:inline``, e.g. ``gpu:nvimgcodec:inline``, decodes them
in the main thread instead, as before ``EmbedParams.prefetch``).
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
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from s3a import embed
from s3a.config import DECODERS
from s3a.embed import EmbedParams, encode_images
from s3a.models import TINY_ARCH, ModelSpec, load_clip

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


_first_batch: list[tuple[float, int]] = []


def _marking_batches(*args, **kwargs):
    """``s3a.embed.image_batches`` that notes when its first batch arrives (for the steady rate)."""
    for i, batch in enumerate(_image_batches(*args, **kwargs)):
        if i == 0:
            _first_batch.append((time.perf_counter(), len(batch[0])))
        yield batch


_image_batches, embed.image_batches = embed.image_batches, _marking_batches


def run(clip, paths: list[str], contender: str, args) -> tuple[float, float, float, np.ndarray]:
    """``(end-to-end img/s, seconds to the first batch, img/s after it, embeddings)``; ``contender``
    is a decoder name, ``gpu:<codec>`` choosing the GPU decoder's JPEG library and ``gpu:<codec>:inline``
    decoding in the main thread (``prefetch=0``)."""
    decoder, codec, mode = (contender.split(":") + ["", ""])[:3]
    os.environ["S3A_GPU_JPEG"] = codec or "auto"
    params = EmbedParams(
        batch_size=args.batch_size,
        num_workers=args.workers,
        decoder=decoder,
        prefetch=0 if mode == "inline" else 2,
    )
    if clip.device.type == "cuda":
        torch.cuda.synchronize()
    _first_batch.clear()
    start = time.perf_counter()
    result = encode_images(clip.model, clip.preprocess, paths, params)
    if clip.device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    assert len(result.index) == len(paths), f"{len(paths) - len(result.index)} images failed"
    first, size = _first_batch[0]
    steady = (len(paths) - size) / (end - first) if len(paths) > size else float("nan")
    return len(paths) / (end - start), first - start, steady, result.embeddings


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
    os.sync()  # written back and read once: every contender starts from the same warm page cache
    for path in paths:
        Path(path).read_bytes()
    return paths


def breakdown(clip, paths: list[str], batch_size: int) -> None:
    """Per-stage time of one batch in the main process: JPEG decoding by each codec, resize + crop,
    the forward pass; says which stage bounds the ``gpu`` decoder."""
    from s3a.decode import GpuDecode, load_nvimgcodec, resize_center_crop
    from s3a.embed import image_autocast

    data = [torch.frombuffer(bytearray(Path(p).read_bytes()), dtype=torch.uint8) for p in paths[:batch_size]]
    sync = torch.cuda.synchronize if clip.device.type == "cuda" else (lambda: None)
    reader = GpuDecode.from_transform(clip.preprocess)
    codecs = ["torchvision"] + (["nvimgcodec"] if load_nvimgcodec() is not None else [])
    for codec in codecs:
        reader.codec = codec
        for _ in range(2):  # the first call creates the codec's handles
            sync()
            start = time.perf_counter()
            images, owners = reader._decode_batch(data, clip.device)
            sync()
            took = time.perf_counter() - start
        print(f"  decode {len(data)} JPEGs ({codec}): {1e3 * took:7.1f} ms = {len(data) / took:8.0f} img/s")
    images = [i for i in images if i is not None]
    sync()
    start = time.perf_counter()
    crops = resize_center_crop(images, reader.size)
    sync()
    took = time.perf_counter() - start
    print(f"  resize + crop: {1e3 * took:7.1f} ms = {len(images) / took:8.0f} img/s")
    with torch.inference_mode(), image_autocast(clip.device):
        x = reader.normalize(crops)
        clip.model.encode_image(x)
        sync()
        start = time.perf_counter()
        clip.model.encode_image(x)
        sync()
        took = time.perf_counter() - start
    print(f"  forward: {1e3 * took:7.1f} ms = {len(images) / took:8.0f} img/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default=TINY_ARCH)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--image-dir", default=str(DEFAULT_IMAGES))
    parser.add_argument("--copies-dir", default=None, help="write the images as distinct files here")
    parser.add_argument(
        "--decoders",
        default="pil,fast",
        help=f"comma-separated, from {DECODERS}; gpu:torchvision / gpu:nvimgcodec pick the JPEG library",
    )
    args = parser.parse_args()
    decoders = args.decoders.split(",")
    if "pil" not in decoders:
        decoders.insert(0, "pil")

    clip = load_clip(ModelSpec(args.arch, None))
    paths = image_paths(Path(args.image_dir), args.images, args.copies_dir)
    for decoder in decoders:  # warm-up: allocator, kernels, nvJPEG handles, page cache
        run(clip, paths[: 2 * args.batch_size], decoder, args)
    rates, startup, steady, embeddings = {}, {}, {}, {}
    for decoder in decoders:
        rates[decoder], startup[decoder], steady[decoder], embeddings[decoder] = run(
            clip, paths, decoder, args
        )
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
            f"{decoder:16s} ({role:8s}): {rates[decoder]:8.1f} img/s"
            f"   ratio to pil {rates[decoder] / rates['pil']:5.2f}"
            f"   (first batch after {startup[decoder]:5.1f} s, then {steady[decoder]:8.1f} img/s,"
            f" ratio {steady[decoder] / steady['pil']:5.2f})"
            f"   cosine to pil mean {cosine.mean():.5f} min {cosine.min():.5f}"
        )
    print(f"one batch of {args.batch_size}, stage by stage:")
    breakdown(clip, paths, args.batch_size)


if __name__ == "__main__":
    main()
