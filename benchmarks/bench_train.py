"""Benchmark: self-training throughput, the full step with data loading vs the bare step, one process.

Both contenders run the same :func:`s3a.train.step.train_step` (teacher forward on the weak view,
student forward/backward on the strong view, AdamW, EMA) on the same model:

* *bare step*: the batch is a fixed tensor already on the device (the ceiling);
* *ours, cpu views* (``train.augment: cpu``): batches come from the training DataLoader (JPEG decode,
  weak view, RandAugment strong view in ``--workers`` processes, pinned memory);
* *ours, gpu views* (``train.augment: gpu``): the workers read the files and draw the views'
  parameters; the batch is decoded and both views made on the device;

both fed rows as ``python -m s3a.train`` builds them (:func:`s3a.train.loop.training_data`).

Images are real JPEGs (``../shared/data/imagenet-sample`` by default) replicated to ``--images``.
The ratio fed / bare says how much data loading costs (1.0 = loading is not the bottleneck); it is
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
from s3a.train.loop import TrainParams, training_data
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
    parser.add_argument(
        "--augment", default="cpu,gpu", help="the fed rows: train.augment values, comma-separated"
    )
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

    def fed(augment: str):
        data, to_views = training_data(
            paths, clip.preprocess_cfg, params.model_copy(update={"augment": augment}), device
        )
        loader = DataLoader(
            data,
            args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            drop_last=True,
            persistent_workers=args.workers > 0,
            collate_fn=getattr(data, "collate", None),
        )
        while True:
            for weak, strong, _ in to_views(loader):
                yield weak, strong, labels

    fixed = (torch.randn(args.batch_size, 3, size, size, device=device),) * 2 + (labels,)
    bare = timed_steps(
        student, teacher, optimizer, iter(lambda: fixed, None), classifier, params, device, args.steps
    )
    rows = {"bare step (tensors on device)": bare}
    for augment in args.augment.split(","):
        rows[f"ours, {augment} views"] = timed_steps(
            student, teacher, optimizer, fed(augment), classifier, params, device, args.steps
        )
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(f"device: {name}; {args.arch} at {size}px; batch {args.batch_size}; {args.workers} loader workers")
    print("                               end to end (3 warm-up steps included)   steady (after them)")
    for label, (end_to_end, steady) in rows.items():
        print(f"{label + ':':31s}{end_to_end:9.1f} img/s {'':28s}{steady:9.1f} img/s")
    for label, (end_to_end, steady) in list(rows.items())[1:]:
        print(f"ratio {label} / bare: end to end {end_to_end / bare[0]:.2f}, steady {steady / bare[1]:.2f}")


if __name__ == "__main__":
    main()
