"""Benchmark: CLIP-Decoder head throughput and memory, label queries in chunks vs all at once.

Both contenders run the same :class:`s3a.multilabel.decoder.head.CLIPDecoderHead` on random patch tokens
``(B, P, D)`` and random unit label embeddings ``(C, D)``:

* *unchunked* (the baseline): every label query through the decoder in one pass (``chunk=0``);
* *chunked* (ours): ``--chunk`` labels per pass; with gradients each chunk is recomputed in the
  backward pass (activation checkpointing), so memory holds one chunk's activations.

For C = 1,006 (NUS-WIDE GZSL) and C = 20,071 (the S3A vocabulary) it prints images/s of a training
step (forward + ASL backward + Adam) and of inference (forward under ``inference_mode``), and the
peak memory of each (CUDA: ``max_memory_allocated``; CPU: peak RSS growth of a fresh subprocess per
measurement), then the ratios chunked / unchunked. A contender that runs out of memory is reported
as such.

    python benchmarks/bench_mlhead.py                       # CPU, reduced head (E 256, P 49; ~2-5 min)
    python benchmarks/bench_mlhead.py --device cuda --batch 32 --tokens 196 --embed-dim 768 \\
        --ff-dim 2048 --dim 512 --chunk 2048                # a GPU, the spec's head on ViT-B/16 tokens
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from s3a.multilabel.decoder.head import CLIPDecoderHead, MLDecoderParams
from s3a.multilabel.losses import asymmetric_loss


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def measure(args: argparse.Namespace) -> dict[str, float]:
    """One contender (``args.labels`` labels, ``args.mode``) in one phase (``args.phase``: ``train``
    or ``infer``): images/s and peak memory (MB)."""
    dev = torch.device(args.device)
    torch.manual_seed(0)
    params = MLDecoderParams(embed_dim=args.embed_dim, heads=8, ff_dim=args.ff_dim, query_chunk=args.chunk)
    head = CLIPDecoderHead(args.dim, args.dim, params).to(dev)
    tokens = torch.randn(args.batch, args.tokens, args.dim, device=dev)
    text = F.normalize(torch.randn(args.labels, args.dim, device=dev), dim=-1)
    targets = (torch.rand(args.batch, args.labels, device=dev) < 3 / args.labels).float()
    chunk = args.chunk if args.mode == "chunked" else 0
    opt = torch.optim.Adam(head.parameters(), lr=1e-4)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step() -> None:
        loss = asymmetric_loss(head(tokens, text, chunk=chunk), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer() -> None:
        with torch.inference_mode():
            head(tokens, text, chunk=chunk)

    fn = step if args.phase == "train" else infer
    head.train(args.phase == "train")
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = _rss_mb()  # the model and inputs exist; what follows is the phase's own memory
    fn()  # warm-up (allocations, Adam state)
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        fn()
    sync()
    elapsed = time.perf_counter() - start
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:  # peak RSS growth of this process (a fresh one per measurement)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return {"img_s": args.batch * args.steps / elapsed, "mem_mb": peak}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--labels", type=int, nargs="+", default=[1006, 20071])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=49, help="patch tokens per image (ViT-B/32: 49)")
    parser.add_argument("--dim", type=int, default=512, help="CLIP embedding width D")
    parser.add_argument("--embed-dim", type=int, default=256)
    parser.add_argument("--ff-dim", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--mode", choices=["chunked", "unchunked"], help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=["train", "infer"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode:  # child: one measurement, JSON on stdout
        args.labels = args.labels[0]
        print(json.dumps(measure(args)))
        return
    print(
        f"device {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU'}), "
        f"B {args.batch}, P {args.tokens}, D {args.dim}, E {args.embed_dim}, FF {args.ff_dim}, "
        f"chunk {args.chunk}, {args.steps} steps"
    )
    base = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--labels")]
    for labels in args.labels:
        if labels <= args.chunk:
            print(f"C={labels}: a single chunk of {args.chunk}: chunked and unchunked run the same pass")
        for phase in ("train", "infer"):
            rows = {}
            for mode in ("unchunked", "chunked"):
                cmd = [
                    sys.executable,
                    __file__,
                    *base,
                    "--labels",
                    str(labels),
                    "--mode",
                    mode,
                    "--phase",
                    phase,
                ]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    tail = (res.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"C={labels:>6} {phase} {mode:>9}: failed ({tail})")
                    continue
                rows[mode] = json.loads(res.stdout.strip().splitlines()[-1])
                r = rows[mode]
                print(f"C={labels:>6} {phase} {mode:>9}: {r['img_s']:9.2f} img/s, peak {r['mem_mb']:8.0f} MB")
            if len(rows) == 2:
                c, u = rows["chunked"], rows["unchunked"]
                speed, mem = c["img_s"] / u["img_s"], c["mem_mb"] / max(u["mem_mb"], 1.0)
                print(f"C={labels:>6} {phase} chunked/unchunked: speed x{speed:.2f}, peak memory x{mem:.2f}")


if __name__ == "__main__":
    main()
