"""Benchmark: the whole K search (spec 4) with the default settings, and one of its k-means runs
against scikit-learn's on the same data, one process.

Data: ``--n`` planted unit-norm features (as ``bench_kmeans.py``) around ``--k`` centres. The search
runs :func:`s3a.discover.kestimate.estimate_k` with the default :class:`KSearchParams` (the torch
k-means backend on ``--device``); the whole search has no practical scikit-learn counterpart (hours
on a CPU at this size), so the baseline rows time one k-means of the search (the planted K on the
search's subsample): its ``n_init`` restarts one at a time (``restart_batch=1``, the sequential
search) against all at once (the default), with the same result; and a fixed ``--iters`` Lloyd
iterations from the same k-means++ start, ours against scikit-learn.

    python benchmarks/bench_ksearch.py --n 20000 --k 60             # a CPU, about a minute
    python benchmarks/bench_ksearch.py --n 300000 --k 1000 --device cuda   # a GPU node
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_kmeans import device_name, planted

from s3a.discover import cluster
from s3a.discover.kestimate import KSearchParams, estimate_k, subsample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--k", type=int, default=60, help="planted clusters")
    ap.add_argument("--noise", type=float, default=2.0)
    ap.add_argument("--iters", type=int, default=5, help="Lloyd iterations of the per-K comparison")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    from sklearn.cluster import KMeans

    dev = cluster.pick_device(args.device)
    x, _ = planted(args.n, args.d, args.k, 0, args.noise)
    params = KSearchParams()
    params = params.model_copy(
        update={"kmeans": params.kmeans.model_copy(update={"backend": "torch", "device": str(dev)})}
    )
    print(f"device: {device_name(dev)}; data N={args.n} D={args.d}, planted K={args.k}")
    print(f"search settings: {params}")
    t0 = time.perf_counter()
    chosen, table = estimate_k(x, params, progress=True)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    total = time.perf_counter() - t0
    print(f"K search (ours): {total:.1f} s for {len(table)} evaluated K; estimated K {chosen}")

    xs = x[subsample(args.n, params)]
    times, results = {}, {}
    for batch in (1, params.kmeans.restart_batch):
        one_k = params.kmeans.model_copy(update={"restart_batch": batch})
        t0 = time.perf_counter()
        results[batch] = cluster.kmeans(xs, args.k, one_k)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times[batch] = time.perf_counter() - t0
    sequential, batched = results[1], results[params.kmeans.restart_batch]
    same = np.array_equal(sequential.labels, batched.labels) and sequential.inertia == batched.inertia
    together = params.kmeans.restart_batch
    print(
        f"one K of the search (K={args.k}, n_init {params.kmeans.n_init}, {len(xs)} points): restarts one at "
        f"a time {times[1]:.2f} s, {together} at once {times[together]:.2f} s, "
        f"ratio {times[1] / times[together]:.2f}x; same partition and inertia: {same}"
    )
    with torch.inference_mode():
        xt = torch.from_numpy(xs).to(dev)
        x_sq = (xt * xt).sum(1)
        init = cluster._kmeans_pp(xt, x_sq, args.k, np.random.RandomState(0))
        cluster._lloyd(xt, x_sq, init, 1, 0.0, params.kmeans.chunk)  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        cluster._lloyd(xt, x_sq, init, args.iters, -1.0, params.kmeans.chunk)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        ours = (time.perf_counter() - t0) / args.iters
    init_np = init.cpu().numpy()
    t0 = time.perf_counter()
    km = KMeans(args.k, init=init_np, n_init=1, max_iter=args.iters, tol=0.0, algorithm="lloyd").fit(xs)
    base = (time.perf_counter() - t0) / km.n_iter_
    print(
        f"one Lloyd iteration at K={args.k} on the {len(xs)}-point subsample: ours {1e3 * ours:.1f} ms, "
        f"scikit-learn {1e3 * base:.1f} ms, ratio {base / ours:.1f}x"
    )


if __name__ == "__main__":
    main()
