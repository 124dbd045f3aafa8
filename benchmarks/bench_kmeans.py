"""Benchmark: k-means Lloyd iterations and the silhouette score, ours vs scikit-learn, one process.

Same data for every contender: ``N`` unit-norm features in ``D`` dimensions around ``K`` planted
centres (CLIP-like: normalised, overlapping clusters). The Lloyd step is timed from the same initial
centroids (k-means++ drawn once), for a fixed number of iterations (``tol=0``, ``n_init=1``), so every
contender runs the same number of iterations; the figure is the wall time per iteration, best of
``--repeat`` runs. The silhouette is timed on one sample of ``--sil-n`` points with the planted labels.

    python benchmarks/bench_kmeans.py                      # defaults sized for a 2-core CPU (< 2 min)
    python benchmarks/bench_kmeans.py --n 200000 --k 1000 --sil-n 50000 --device cuda   # a GPU node
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch


def planted(n: int, d: int, k: int, seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """``(N, D)`` float32 unit-norm points around ``k`` planted unit-norm centres, and their labels
    (generated in float32 blocks: 1.28M x 512 takes a few seconds and 2.6 GB)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    x = np.empty((n, d), np.float32)
    for s in range(0, n, 65536):
        block = centres[labels[s : s + 65536]]
        block += (noise / np.sqrt(d)) * rng.standard_normal(block.shape, dtype=np.float32)
        x[s : s + 65536] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return x, labels


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu ({model}, {torch.get_num_threads()} torch threads)"


REPEAT = 3


def timed(fn, dev: torch.device):
    """``fn()`` and its best wall time over ``REPEAT`` runs (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(REPEAT):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="points")
    ap.add_argument("--d", type=int, default=512, help="dimensions")
    ap.add_argument("--k", type=int, default=100, help="clusters")
    ap.add_argument("--iters", type=int, default=20, help="Lloyd iterations timed")
    ap.add_argument("--sil-n", type=int, default=10000, help="points in the silhouette sample")
    ap.add_argument("--chunk", type=int, default=16384, help="rows per k-means distance block")
    ap.add_argument("--sil-chunk", type=int, default=2048, help="points per silhouette block")
    ap.add_argument("--device", default=None, help="torch device (default: cuda when present)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=4.0, help="noise norm around the unit-norm centres")
    ap.add_argument("--skip-sklearn-silhouette", action="store_true", help="for N too large for sklearn")
    ap.add_argument("--full-n-init", type=int, default=3, help="restarts of the whole k-means runs (0: skip)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best time is kept")
    args = ap.parse_args()
    global REPEAT
    REPEAT = args.repeat

    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score as sk_silhouette

    from s3a.discover import cluster
    from s3a.discover.kestimate import silhouette_score

    dev = cluster.pick_device(args.device)
    print(f"device: {device_name(dev)}; torch {torch.__version__}")
    x, y = planted(args.n, args.d, args.k, args.seed, args.noise)
    print(f"data: N={args.n} D={args.d} K={args.k} (planted, unit norm)")

    rows: list[tuple[str, str, float, float, str]] = []

    # -- shared initial centroids ---------------------------------------------------------------------
    with torch.inference_mode():
        xt = torch.from_numpy(x).to(dev)
        x_sq = (xt * xt).sum(1)
        init = cluster._kmeans_pp(xt, x_sq, args.k, np.random.RandomState(args.seed))
        init_np = init.cpu().numpy()
        # warm-up (allocator, kernels)
        cluster._lloyd(xt, x_sq, init, 1, 0.0, args.chunk)
        (_, _, inertia_t, it_t), t_torch = timed(
            lambda: cluster._lloyd(xt, x_sq, init, args.iters, -1.0, args.chunk), dev
        )
    per_torch = t_torch / it_t

    km, t_sk = timed(
        lambda: KMeans(args.k, init=init_np, n_init=1, max_iter=args.iters, tol=0.0, algorithm="lloyd").fit(
            x
        ),
        torch.device("cpu"),
    )
    per_sk = t_sk / km.n_iter_
    size = f"{args.n}x{args.d}, K={args.k}"
    print(
        f"Lloyd torch  : {it_t} it, {1e3 * per_torch:8.2f} ms/it, inertia {inertia_t:.6g}\n"
        f"Lloyd sklearn: {km.n_iter_} it, {1e3 * per_sk:8.2f} ms/it, inertia {km.inertia_:.6g}\n"
        f"  speed-up torch vs sklearn: {per_sk / per_torch:.2f}x"
    )
    rows.append(("Lloyd iteration (torch)", size, per_torch * 1e3, per_sk * 1e3, str(dev)))

    faiss = cluster._faiss()
    if faiss is not None:
        fk = faiss.Kmeans(
            args.d, args.k, niter=args.iters, nredo=1, seed=args.seed, verbose=False,
            min_points_per_centroid=1, max_points_per_centroid=args.n // args.k + 1,
            gpu=cluster._faiss_gpus() > 0,
        )  # fmt: skip
        _, t_f = timed(lambda: fk.train(x, init_centroids=init_np), torch.device("cpu"))
        per_f = t_f / args.iters
        print(
            f"Lloyd faiss  : {args.iters} it, {1e3 * per_f:8.2f} ms/it, objective {fk.obj[-1]:.6g}\n"
            f"  speed-up faiss vs sklearn: {per_sk / per_f:.2f}x"
        )
        rows.append(
            ("Lloyd iteration (faiss)", size, per_f * 1e3, per_sk * 1e3, "faiss-gpu" if fk.gpu else "cpu")
        )

    # -- whole k-means with the 5.1 settings except n_init (tol 1e-4, max_iter 1000, own inits) ----------
    if args.full_n_init:
        full: dict[str, float] = {}
        for backend in ("torch", "faiss", "sklearn"):
            if backend == "faiss" and faiss is None:
                continue
            p = cluster.KMeansParams(
                n_init=args.full_n_init, max_iter=1000, backend=backend, device=args.device
            )
            t0 = time.perf_counter()
            res = cluster.kmeans(x, args.k, p)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            full[backend] = time.perf_counter() - t0
            print(
                f"k-means {res.backend:9s} n_init={args.full_n_init}: {full[backend]:7.2f} s, "
                f"{res.n_iter} it, inertia {res.inertia:.6g}"
            )
        for backend in ("torch", "faiss"):
            if backend in full:
                rows.append(
                    (f"k-means, n_init={args.full_n_init}, tol=1e-4 ({backend})", size,
                     full[backend] * 1e3, full["sklearn"] * 1e3, str(dev) if backend == "torch" else "cpu")
                )  # fmt: skip

    # -- silhouette ------------------------------------------------------------------------------------
    idx = np.random.RandomState(args.seed).permutation(args.n)[: args.sil_n]
    xs, ys = x[idx], y[idx]
    silhouette_score(xs[:100], ys[:100], device=args.device)  # warm-up
    s_ours, t_ours = timed(lambda: silhouette_score(xs, ys, chunk=args.sil_chunk, device=args.device), dev)
    line = f"silhouette ours   : {s_ours:.8f} in {t_ours:.2f} s"
    if args.skip_sklearn_silhouette:
        print(line)
    else:
        s_sk, t_sk_sil = timed(lambda: sk_silhouette(xs, ys), torch.device("cpu"))
        print(
            f"{line}\nsilhouette sklearn: {s_sk:.8f} in {t_sk_sil:.2f} s (|diff| {abs(s_ours - s_sk):.1e})\n"
            f"  speed-up: {t_sk_sil / t_ours:.2f}x"
        )
        rows.append(("silhouette", f"{len(xs)}x{args.d}, K={args.k}", t_ours * 1e3, t_sk_sil * 1e3, str(dev)))

    print("\n| step | data size | ours (ms) | scikit-learn (ms) | ratio | device |")
    print("|---|---|---|---|---|---|")
    for step, data, ours, base, where in rows:
        print(f"| {step} | {data} | {ours:.1f} | {base:.1f} | {base / ours:.2f}x | {where} |")


if __name__ == "__main__":
    main()
