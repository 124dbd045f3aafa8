"""Benchmark: self-training throughput, the full step with data loading vs the bare step, one process.

Both contenders run the same :func:`s3a.train.step.train_step` (teacher forward on the weak view,
student forward/backward on the strong view, AdamW, EMA) on the same model:

* *bare step*: the batch is a fixed tensor already on the device (the ceiling);
* *ours*: batches come from the training DataLoader (JPEG decode, weak view, RandAugment strong view,
  ``--workers`` processes, pinned memory), as ``python -m s3a.train`` runs it.

Images are real JPEGs (``../shared/data/imagenet-sample`` by default) replicated to ``--images``.
The ratio ours / bare says how much data loading costs (1.0 = loading is not the bottleneck); it is
printed end to end (from the first batch requested, the loader workers' start-up and 3 warm-up steps
included) and in the steady state (the ``--steps`` steps after the warm-up).

    python benchmarks/bench_train.py                                      # tiny model, CPU (about 1 min)
    python benchmarks/bench_train.py --arch ViT-B-16 --batch-size 128 --workers 15 --steps 30   # a GPU
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from s3a.models import TINY_ARCH, ModelSpec, load_clip
from s3a.train.augment import TwoViews, training_views
from s3a.train.loop import TrainParams
from s3a.train.optim import param_groups
from s3a.train.step import train_step

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def timed_steps(
    model, teacher, optimizer, batches, classifier, params, device, steps: int
) -> tuple[float, float]:
    """``(end-to-end img/s, steady img/s)``: end to end over 3 warm-up steps and ``steps`` steps, from
    the first request for a batch (so the loader workers' start-up counts); steady over the ``steps``
    steps after the warm-up."""
    it = iter(batches)
    begin, seen_all = time.perf_counter(), 0
    for step in range(3):
        batch = next(it)
        train_step(model, teacher, optimizer, batch, classifier, params, step, 1e-6, device)
        seen_all += len(batch[0])
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, seen = time.perf_counter(), 0
    for step in range(steps):
        batch = next(it)
        train_step(model, teacher, optimizer, batch, classifier, params, step, 1e-6, device)
        seen += len(batch[0])
    if device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    return (seen_all + seen) / (end - begin), seen / (end - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default=TINY_ARCH)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--images", type=int, default=2000, help="images in the replicated JPEG list")
    parser.add_argument("--image-dir", default=str(DEFAULT_IMAGES))
    parser.add_argument("--vocab", type=int, default=20071, help="rows of the (random) vocabulary classifier")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    clip = load_clip(ModelSpec(args.arch, None), device=device)
    student = clip.model.visual.float()
    teacher = copy.deepcopy(student).requires_grad_(False)
    size = clip.preprocess_cfg["size"]
    params = TrainParams(batch_size=args.batch_size)
    optimizer = torch.optim.AdamW(param_groups(student, params), lr=1e-6)
    dim = student.output_dim
    classifier = torch.nn.functional.normalize(torch.randn(args.vocab, dim, device=device), dim=-1)
    labels = torch.randint(0, args.vocab, (args.batch_size,))

    files = sorted(str(p) for p in Path(args.image_dir).glob("*.JPEG"))
    if not files:
        raise SystemExit(f"no JPEG files in {args.image_dir}")
    paths = [files[i % len(files)] for i in range(args.images)]
    loader = DataLoader(
        TwoViews(paths, *training_views(clip.preprocess_cfg)),
        args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=args.workers > 0,
    )

    def loaded():
        while True:
            for weak, strong, _ in loader:
                yield weak, strong, labels

    fixed = (torch.randn(args.batch_size, 3, size, size, device=device),) * 2 + (labels,)
    bare = timed_steps(
        student, teacher, optimizer, iter(lambda: fixed, None), classifier, params, device, args.steps
    )
    ours = timed_steps(student, teacher, optimizer, loaded(), classifier, params, device, args.steps)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(f"device: {name}; {args.arch} at {size}px; batch {args.batch_size}; {args.workers} loader workers")
    print("                               end to end (3 warm-up steps included)   steady (after them)")
    print(f"bare step (tensors on device): {bare[0]:9.1f} img/s {'':28s}{bare[1]:9.1f} img/s")
    print(f"ours (JPEG loading + views):   {ours[0]:9.1f} img/s {'':28s}{ours[1]:9.1f} img/s")
    print(f"ratio ours / bare: end to end {ours[0] / bare[0]:.2f}, steady {ours[1] / bare[1]:.2f}")


if __name__ == "__main__":
    main()
