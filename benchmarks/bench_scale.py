"""Benchmark: time and peak memory of every discovery step at two sizes, and how they grow with N.

Synthetic data with the shapes of a real run: ``N`` unit-norm image features (``D`` = 512, ViT-B/16)
around ``K`` planted class centres; a vocabulary classifier of ``V`` = 20,071 unit-norm names, ``K`` of
them near the class centres; each image's top-1 name as the ``zero_shot`` rule writes it (the class's
name with probability ``--top1-accuracy``, else a random name of the vocabulary); LLM descriptions of
every candidate (``--phrases`` phrases each) embedded near their name. Each step runs as its rule runs
it:

- ``k-search (1 K)``: :func:`s3a.discover.kestimate.estimate_k` on the one K of the planted ``K``
  (``lo = hi = K``, one round): the k-means of the ``max(min_sample, N/2)`` subsample plus the
  silhouette of ``silhouette_sample`` points, i.e. the cost of one K of the search (a full search
  evaluates about 30 of them);
- ``k-means``: :func:`s3a.discover.cluster.kmeans` into ``K`` clusters, ``tol = 0`` so that both sizes
  run ``--iters`` iterations per restart (the iteration count is printed);
- ``vote``: :func:`s3a.discover.vote.cluster_vote` (3 iterations, from the given top-1) and
  :func:`~s3a.discover.vote.top_candidates`;
- ``realign``: :func:`s3a.discover.realign.realign_labels`;
- ``top-1 (zero_shot)`` with ``--real-top1``: the whole-vocabulary argmax the ``zero_shot`` rule
  computes upstream (the vote reads it); off by default because it is the costliest step on a CPU
  (``N x V x D``: about 20 s per 10,000 images on 2 cores).

For every step and size the script prints the wall time, the peak memory the step added on top of
what the process held before it (Linux ``VmHWM`` reset through ``/proc/self/clear_refs``; ``n/a``
where that file cannot be written) and, between the two sizes, the growth exponent ``b`` of
``time ~ N^b`` and ``memory ~ N^b`` (``b = log(y2 / y1) / log(N2 / N1)``).

    python benchmarks/bench_scale.py                                   # N = 10k and 40k, 2-core CPU, ~1-2 min
    python benchmarks/bench_scale.py --sizes 100000 400000 --k 1000 --real-top1 --device cuda   # a GPU node
    python benchmarks/bench_scale.py --silhouette-sample 0             # the official O(N^2) silhouette
    python benchmarks/bench_scale.py --silhouette-error 40000          # sampled vs exact silhouette
"""

from __future__ import annotations

import argparse
import ctypes
import math
import re
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from bench_kmeans import device_name  # the sibling script (benchmarks/ is on sys.path when run)

from s3a.discover.cluster import KMeansParams, kmeans
from s3a.discover.kestimate import KSearchParams, estimate_k, silhouette_score
from s3a.discover.realign import RealignParams, realign_labels
from s3a.discover.vote import VoteParams, cluster_vote, top_candidates
from s3a.embed import zero_shot
from s3a.models import pick_device

V_NAMES = 20_071  # the vocabulary of spec 2.1


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            match = re.search(rf"^{field}:\s+(\d+) kB", fh.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak() -> bool:
    """Reset the process's peak RSS (``VmHWM``) to its current RSS; False when Linux does not let us."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _return_freed_memory() -> None:
    """Make glibc hand every block of 64 KB or more back to the OS when freed (a fixed mmap threshold).

    Otherwise glibc raises its threshold after the first large free and keeps later blocks in the heap,
    where a step can reuse what an earlier step freed without its resident set growing: the added
    peak would read too low. No-op where glibc's ``mallopt`` is not available.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 65536)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 65536)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def measure(fn: Callable[[], object], dev: torch.device) -> tuple[object, float, float]:
    """``fn()``, its wall time (s) and the peak memory it added (MB; NaN when not measurable).

    On CUDA the added memory is the peak of ``torch.cuda.max_memory_allocated`` over what was allocated
    before; on the CPU it is the peak resident set size over the resident set before.
    """
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
    ok = _reset_peak()
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elapsed = time.perf_counter() - t0
    if dev.type == "cuda":
        added = (torch.cuda.max_memory_allocated(dev) - before) / 2**20
    else:
        peak = _status_kb("VmHWM")
        added = (peak - rss0) / 1024 if ok and peak is not None and rss0 is not None else math.nan
    return out, elapsed, added


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def vocabulary(d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(V, D)`` float32 classifier and the ``(K,)`` names of the planted classes."""
    rng = np.random.RandomState(seed)
    classifier = unit(rng.randn(V_NAMES, d)).astype(np.float32)
    names = rng.choice(V_NAMES, k, replace=False)
    return classifier, names


def images(
    n: int, classifier: np.ndarray, names: np.ndarray, noise: float, top1_accuracy: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N, D)`` features near their class's name, ``(N,)`` classes and ``(N,)`` synthetic top-1 names."""
    rng = np.random.RandomState(seed + n)
    d = classifier.shape[1]
    classes = rng.randint(0, len(names), n)
    x = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 65536):  # in blocks: no float64 (N, D) temporary
        c = classes[start : start + 65536]
        block = classifier[names[c]] + noise * rng.randn(len(c), d).astype(np.float32) / np.sqrt(d)
        x[start : start + len(c)] = unit(block)
    top1 = np.where(rng.rand(n) < top1_accuracy, names[classes], rng.randint(0, V_NAMES, n))
    return x, classes, top1.astype(np.int64)


def descriptions(candidates: pd.DataFrame, classifier: np.ndarray, phrases: int, seed: int):
    """Descriptions table and ``(P, D)`` phrase embeddings: ``phrases`` per candidate, near its name."""
    rng = np.random.RandomState(seed)
    repeated = candidates.index.repeat(phrases)
    table = candidates.loc[repeated, ["cluster", "vocab_index"]].reset_index(drop=True)
    table["phrase"] = [f"phrase {i}" for i in range(len(table))]
    table["count"] = rng.randint(1, 4, len(table))
    d = classifier.shape[1]
    emb = unit(classifier[table.vocab_index.to_numpy()] + 0.5 * rng.randn(len(table), d) / np.sqrt(d))
    return table, emb.astype(np.float32)


def run_size(n: int, args: argparse.Namespace, classifier: np.ndarray, names: np.ndarray) -> dict:
    """Time and added peak memory of every step on ``n`` images: ``step -> (seconds, MB, note)``."""
    dev = pick_device(args.device)
    x, _, top1 = images(n, classifier, names, args.noise, args.top1_accuracy, args.seed)
    rows: dict[str, tuple[float, float, str]] = {}
    sample = None if args.silhouette_sample == 0 else args.silhouette_sample
    search = KSearchParams(
        lo=args.k,
        hi=args.k,
        rounds=1,
        silhouette_sample=sample,
        kmeans=KMeansParams(n_init=args.n_init, max_iter=args.iters, tol=0.0, device=args.device),
    )
    n_sub = min(n, max(search.min_sample, int(search.sample_fraction * n)))
    scored = n_sub if sample is None else min(n_sub, sample)
    _, t, m = measure(lambda: estimate_k(x, search, progress=False), dev)
    rows["k-search (1 K)"] = (t, m, f"k-means of {n_sub}, silhouette of {scored}")

    params = KMeansParams(n_init=args.n_init, max_iter=args.iters, tol=0.0, device=args.device)
    result, t, m = measure(lambda: kmeans(x, args.k, params), dev)
    rows["k-means"] = (t, m, f"{args.n_init} x {result.n_iter} iterations")

    if args.real_top1:
        (pred, _), t, m = measure(lambda: zero_shot(x, classifier, device=args.device), dev)
        rows["top-1 (zero_shot)"] = (t, m, f"{n} x {V_NAMES}, top-1 of the input used below")
        top1 = pred

    def vote():
        res = cluster_vote(x, classifier, result.labels, VoteParams(n_iter=3), top1=top1, device=args.device)
        return res, top_candidates(res.votes, 3)

    (voted, candidates), t, m = measure(vote, dev)
    rows["vote"] = (t, m, f"{voted.votes.shape[0]} clusters, 3 iterations")

    desc, phrase_emb = descriptions(candidates, classifier, args.phrases, args.seed)
    ids = np.arange(n, dtype=np.int64)
    _, t, m = measure(
        lambda: realign_labels(
            ids, x, classifier, voted.partition, candidates, desc, phrase_emb, RealignParams(), args.device
        ),
        dev,
    )
    rows["realign"] = (t, m, f"{len(desc)} phrases")
    return rows


def silhouette_error(n: int, d: int, k: int, samples: list[int], repeats: int, seed: int) -> None:
    """Print how far the sampled silhouette is from the exact one on ``n`` clustered points."""
    rng = np.random.RandomState(seed)
    centres = unit(rng.randn(k, d))
    y = rng.randint(0, k, n)
    x = unit(centres[y] + 0.9 * rng.randn(n, d) / np.sqrt(d)).astype(np.float32)
    labels = kmeans(x, k, KMeansParams(n_init=1, max_iter=50)).labels
    t0 = time.perf_counter()
    exact = silhouette_score(x, labels)
    print(f"exact silhouette of {n} points (D={d}, K={k}): {exact:.4f} in {time.perf_counter() - t0:.1f} s")
    for m in samples:
        errors = []
        for r in range(repeats):
            idx = np.random.RandomState(seed + 1 + r).permutation(n)[:m]
            errors.append(abs(silhouette_score(x[idx], labels[idx]) - exact))
        mean, worst = np.mean(errors), np.max(errors)
        print(f"sample of {m}: |error| mean {mean:.1e}, max {worst:.1e} ({repeats} samples)")


def exponent(a: float, b: float, n1: int, n2: int) -> str:
    if not (a > 0 and b > 0) or math.isnan(a) or math.isnan(b):
        return "n/a"
    return f"{math.log(b / a) / math.log(n2 / n1):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[10000, 40000], help="the two N")
    ap.add_argument("--d", type=int, default=512, help="feature dimension (ViT-B/16: 512, ViT-L/14: 768)")
    ap.add_argument("--k", type=int, default=100, help="planted classes = K of every step")
    ap.add_argument("--iters", type=int, default=10, help="Lloyd iterations per k-means restart (tol 0)")
    ap.add_argument("--n-init", type=int, default=1, help="k-means restarts (official: 17 / search 10)")
    ap.add_argument(
        "--silhouette-sample",
        type=int,
        default=KSearchParams().silhouette_sample,
        help="points scored per K (default: the library's); 0 = the whole subsample (official, O(N^2))",
    )
    ap.add_argument("--noise", type=float, default=1.0, help="noise norm around the class names")
    ap.add_argument("--top1-accuracy", type=float, default=0.6, help="synthetic top-1: P(class's name)")
    ap.add_argument("--phrases", type=int, default=5, help="LLM phrases per candidate name")
    ap.add_argument("--real-top1", action="store_true", help="also time the zero_shot top-1 over V names")
    ap.add_argument("--device", default=None, help="torch device (default: cuda when present)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--silhouette-error",
        type=int,
        default=0,
        metavar="N",
        help="instead: the error of 10k and 20k silhouette samples against the exact score on N points",
    )
    args = ap.parse_args()
    if args.silhouette_error:
        silhouette_error(args.silhouette_error, 64, args.k, [10000, 20000], 5, args.seed)
        return
    n1, n2 = sorted(args.sizes)
    if n1 == n2 or n1 < args.k:
        ap.error("--sizes needs two different N, each at least --k")

    _return_freed_memory()
    classifier, names = vocabulary(args.d, args.k, args.seed)
    first = run_size(n1, args, classifier, names)
    second = run_size(n2, args, classifier, names)
    dev = pick_device(args.device)
    print(f"device: {device_name(dev)}; torch {torch.__version__}")
    print(f"D={args.d}, K={args.k}, V={V_NAMES}, k-means {args.n_init} x {args.iters} iterations (tol 0)")
    print(f"memory: peak {'GPU memory' if dev.type == 'cuda' else 'resident set'} added by the step")
    print()
    print(f"| step | N | time | memory | N | time | memory | time ~ N^b | memory ~ N^b | notes (N={n2}) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for step in first:
        t1, m1, _ = first[step]
        t2, m2, note = second[step]
        print(
            f"| {step} | {n1} | {t1:.2f} s | {m1:.0f} MB | {n2} | {t2:.2f} s | {m2:.0f} MB "
            f"| {exponent(t1, t2, n1, n2)} | {exponent(m1, m2, n1, n2)} | {note} |"
        )


if __name__ == "__main__":
    main()
