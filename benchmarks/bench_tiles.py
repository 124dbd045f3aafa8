"""Benchmark: tile embedding crops/s against ``embed_images`` img/s, and pseudo-label aggregation at scale.

Part 1, the ``embed_tiles`` rule against the ``embed_images`` rule, in one process, on the same
JPEG files, with the same model, forward batch and loader workers:

* *baseline*: :func:`s3a.embed.encode_images` (``--decoder``, ``pil`` by default: PIL decode and the
  model's own transform in the workers), ``--batch-size`` images per forward;
* *ours*: :func:`s3a.multilabel.views.tiles.encode_tiles` (one decode per image, a ``--grid`` x
  ``--grid`` grid of crops cut and fitted in the workers), ``--batch-size`` crops per forward.

It prints img/s of the baseline, crops/s of the tiles and their ratio (crops/s / img/s; the
target is >= 0.8 on a GPU, where both are bound by the forward pass), after one warm-up pass of
each, as the best of ``--repeats`` alternating runs: end to end (the whole call, its loader
workers' start-up and first batch included) and steady (from the first forward batch on).

Part 2, the ``init_pseudolabels`` rule at COCO-like size: :func:`s3a.multilabel.aggregate.view_scores`
(``--n`` images, ``--labels`` labels, ``--grid``² tiles, D = ``--dim``, random unit embeddings) and
:func:`~s3a.multilabel.aggregate.aggregate` on the scores it returns, each with its wall time and the
peak memory it adds to the process (Linux ``VmHWM``; the inputs are excluded). The random
embeddings are held as ``--emb-dtype`` (float16 by default: half the 2.2 GB of float32 tiles at
120k x 9 x 512; ``view_scores`` reads them chunk by chunk as float32).

    python benchmarks/bench_tiles.py                                   # tiny model, CPU, 300 photos
    python benchmarks/bench_tiles.py --arch ViT-B-16 --images 300      # random ViT-B/16 weights, CPU
    python benchmarks/bench_tiles.py --arch ViT-B-16 --images 5000 --batch-size 576 --workers 15 \\
        --device cuda                                                 # a GPU node
    python benchmarks/bench_tiles.py --skip-embed                      # aggregation only (120k x 80 x 9)
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from bench_kmeans import device_name  # sibling scripts (benchmarks/ is on sys.path when run)
from bench_scale import _return_freed_memory, measure

from s3a.embed import EmbedParams, encode_images
from s3a.models import TINY_ARCH, ModelSpec, load_clip
from s3a.multilabel.aggregate import PseudoParams, aggregate, view_scores
from s3a.multilabel.views.tiles import TileParams, encode_tiles

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def image_files(source: Path, n: int) -> list[str]:
    """The first ``n`` JPEG/PNG files of ``source`` by name (repeated when there are fewer)."""
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not files:
        raise SystemExit(f"no JPEG or PNG files in {source}; pass --image-dir")
    return [str(files[i % len(files)]) for i in range(n)]


def bench_embedding(args: argparse.Namespace) -> None:
    clip = load_clip(ModelSpec(args.arch, None), device=args.device)
    dev = clip.device
    first: list[tuple[float, int]] = []  # (time, batch size) of a run's first forward batch
    clip.model.visual.register_forward_pre_hook(
        lambda module, inputs: None if first else first.append((time.perf_counter(), len(inputs[0])))
    )

    def timed(fn, items: int) -> tuple[object, float, float]:
        """``fn()``, its wall time and its steady rate (items per second after the first batch)."""
        first.clear()
        ended: list[float] = []

        def run():
            out = fn()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            ended.append(time.perf_counter())
            return out

        out, took, _ = measure(run, dev)
        start, size = first[0]
        return out, took, (items - size) / (ended[0] - start) if items > size else math.nan

    paths = image_files(Path(args.image_dir), args.images)
    tiles = TileParams(grid=args.grid, fit=args.fit, batch_size=args.batch_size, num_workers=args.workers)
    embed = EmbedParams(batch_size=args.batch_size, num_workers=args.workers, decoder=args.decoder)

    def run_embed(p):
        return encode_images(clip.model, clip.preprocess, p, embed)

    def run_tiles(p):
        return encode_tiles(clip.model, clip.preprocess, p, tiles, device=dev, progress=False)

    warm = paths[: max(2, args.batch_size // tiles.n_tiles)]  # one forward batch of crops
    run_embed(warm)  # warm-up: allocator, kernels
    run_tiles(warm)
    t_embed = t_tiles = float("inf")
    steady_img = steady_crops = math.nan  # stays nan when the images fill one batch only
    m = tiles.n_tiles
    for _ in range(args.repeats):  # alternating, best of each: a shared machine's load varies
        whole, took, rate = timed(lambda: run_embed(paths), len(paths))
        t_embed, steady_img = min(t_embed, took), np.fmax(steady_img, rate)
        cut, took, rate = timed(lambda: run_tiles(paths), len(paths) * m)
        t_tiles, steady_crops = min(t_tiles, took), np.fmax(steady_crops, rate)
    assert len(whole.index) == len(cut.index) == len(paths), "some images failed to decode"
    img_s = len(paths) / t_embed
    crops_s = len(paths) * m / t_tiles
    print(
        f"device: {device_name(dev)}; {args.arch}; {len(paths)} images ({Path(args.image_dir).name}); "
        f"batch {args.batch_size} per forward; {args.workers} loader workers; best of {args.repeats}"
    )
    print(f"embed_images ({args.decoder}, baseline): {img_s:9.1f} img/s    ({t_embed:.2f} s)")
    print(
        f"encode_tiles ({args.grid}x{args.grid}, {args.fit}, ours): {crops_s:9.1f} crops/s  "
        f"({t_tiles:.2f} s; {crops_s / m:.1f} img/s)"
    )
    print(f"ratio crops/s / img/s: {crops_s / img_s:.2f} end to end   (target >= 0.8 on a GPU)")
    if math.isnan(steady_img) or math.isnan(steady_crops):
        print("steady: not measured (the images fill one forward batch; give more --images)")
        return
    print(
        f"steady (after the first forward batch): {steady_img:.1f} img/s, {steady_crops:.1f} crops/s, "
        f"ratio {steady_crops / steady_img:.2f}"
    )


def random_unit(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: str, chunk: int = 8192
) -> np.ndarray:
    """Random unit rows of ``shape`` in ``dtype``, drawn ``chunk`` leading rows at a time."""
    out = np.empty(shape, dtype)
    for s in range(0, shape[0], chunk):
        x = rng.standard_normal((min(chunk, shape[0] - s), *shape[1:]), dtype=np.float32)
        out[s : s + len(x)] = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


def bench_aggregation(args: argparse.Namespace) -> None:
    _return_freed_memory()
    rng = np.random.default_rng(0)
    m = args.grid * args.grid
    glob = random_unit(rng, (args.n, args.dim), args.emb_dtype)
    tiles = random_unit(rng, (args.n, m, args.dim), args.emb_dtype)
    classifier = random_unit(rng, (args.labels, args.dim), "float32")
    params = PseudoParams(chunk=args.chunk)
    cpu = torch.device("cpu")
    views, t_views, mem_views = measure(lambda: view_scores(glob, tiles, classifier, params), cpu)
    _, t_agg, mem_agg = measure(lambda: aggregate(views, params), cpu)
    _, t_other, _ = measure(lambda: aggregate(views, PseudoParams(zeta=0.3, lam=0.5)), cpu)
    gb = (glob.nbytes + tiles.nbytes) / 2**30
    print(
        f"pseudo-label aggregation: {args.n} images x {args.labels} labels x {m} tiles, D {args.dim} "
        f"({args.emb_dtype} embeddings, {gb:.2f} GB), chunk {args.chunk}; {device_name(cpu)}"
    )
    print(f"view_scores (S_g, alpha, beta, mean): {t_views:7.2f} s   peak +{mem_views:7.0f} MB")
    print(f"aggregate (S_agg, S_final):           {t_agg:7.2f} s   peak +{mem_agg:7.0f} MB")
    print(f"aggregate, another (zeta, lambda):    {t_other:7.2f} s")
    print(f"total: {t_views + t_agg:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default=TINY_ARCH, help="open_clip architecture (random weights)")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--image-dir", default=str(DEFAULT_IMAGES))
    parser.add_argument("--batch-size", type=int, default=144, help="images (baseline) or crops per forward")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--decoder", default="pil", help="embed_images' decoder (pil, fast, gpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each contender (best kept)")
    parser.add_argument("--grid", type=int, default=3)
    parser.add_argument("--fit", default="center_crop")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present)")
    parser.add_argument("--n", type=int, default=120_000, help="images of the aggregation")
    parser.add_argument("--labels", type=int, default=80)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--emb-dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--chunk", type=int, default=PseudoParams().chunk, help="images per view_scores step")
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument("--skip-aggregate", action="store_true")
    args = parser.parse_args()
    if not args.skip_embed:
        bench_embedding(args)
    if not args.skip_aggregate:
        bench_aggregation(args)


if __name__ == "__main__":
    main()
