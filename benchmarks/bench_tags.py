"""Benchmark: the tags of a photo folder (rule ``tag_images``) streamed by image id, against the
whole-table approach, at 100,000 photos.

Data (written once per run into ``--workdir``): ``--n`` photos, each with a global embedding and a
``--grid``² tile table (``s3a.multilabel.views.tables.tiles_table`` files, D = ``--dim``, float32) in which
every view shows one of ``--labels`` discovered names plus noise (so photos hold several names), and
the ``(C, D)`` embeddings of those names. The discovery step is left out of both (it runs on a
bounded sample, ``names.tags.sample_images``, the same for both); what is compared is scoring every
photo over the discovered names and keeping its tags:

* *ours*: :func:`s3a.multilabel.openvocab.tags.score_tags` over
  :func:`~s3a.multilabel.views.tables.iter_view_batches`
  (the tile file read ``--chunk`` photos at a time; only the tags kept);
* *baseline*: the whole tables in memory: :func:`s3a.multilabel.views.tables.read_tiles` (all tiles),
  :func:`s3a.multilabel.aggregate.view_scores` and ``aggregate`` on every photo at once, then the long
  table of every (photo, name, score) in pandas, filtered at the threshold and cut to the best
  ``max_tags`` per photo by a sort and ``groupby().head()``.

Both read the global embeddings whole (``(N, D)`` float32). For each it prints the wall time and the
peak memory it adds to the process (Linux ``VmHWM`` over the resident set before; the inputs on disk
are not counted), the ratios baseline / ours, and checks that both kept the same tags.

    python benchmarks/bench_tags.py                      # 100,000 photos, 9 tiles, D 512, 40 names
    python benchmarks/bench_tags.py --n 20000 --dim 256  # smaller
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from bench_scale import _return_freed_memory, measure

from s3a.io import read_embeddings, write_embeddings
from s3a.multilabel.aggregate import PseudoParams, aggregate, view_scores
from s3a.multilabel.openvocab.tags import TagParams, score_tags
from s3a.multilabel.views.tables import iter_view_batches, read_tiles, tiles_table


def write_folder(
    folder: Path, n: int, m: int, d: int, c: int, seed: int = 0, block: int = 5000
) -> tuple[str, str, np.ndarray]:
    """The global and tile files of ``n`` synthetic photos, and the ``(c, d)`` name embeddings."""
    rng = np.random.default_rng(seed)
    names = rng.normal(size=(c, d)).astype(np.float32)
    names /= np.linalg.norm(names, axis=1, keepdims=True)
    glob_path, tiles_path = str(folder / "embed.parquet"), str(folder / "tiles.parquet")
    glob = np.empty((n, d), np.float32)
    writer = None
    for s in range(0, n, block):
        e = min(n, s + block)
        held = rng.integers(0, c, size=(e - s, 3))  # up to three names per photo
        shown = np.take_along_axis(held, rng.integers(0, 3, size=(e - s, m)), axis=1)
        tiles = names[shown] + rng.normal(scale=1.2 / np.sqrt(d), size=(e - s, m, d)).astype(np.float32)
        tiles /= np.linalg.norm(tiles, axis=2, keepdims=True)
        g = tiles.mean(axis=1)
        glob[s:e] = g / np.linalg.norm(g, axis=1, keepdims=True)
        table = tiles_table(np.arange(s, e), np.zeros((e - s, m, 4), np.int32), tiles)
        writer = writer or pq.ParquetWriter(tiles_path, table.schema)
        writer.write_table(table)
    writer.close()
    write_embeddings(np.arange(n), glob, glob_path)
    return glob_path, tiles_path, names


def whole_table_tags(glob_path: str, tiles_path: str, names: np.ndarray, params: TagParams) -> pd.DataFrame:
    """The baseline: every table whole in memory, the tags picked from the long table with pandas."""
    g_ids, glob = read_embeddings(glob_path)
    t_ids, tiles = read_tiles(tiles_path)
    glob = glob[pd.Index(g_ids).get_indexer(t_ids)]
    pseudo = PseudoParams()
    _, final = aggregate(view_scores(glob, tiles, names, pseudo), pseudo)
    c = final.shape[1]
    long = pd.DataFrame(
        {
            "image_id": np.repeat(t_ids, c),
            "vocab_index": np.tile(np.arange(c), len(t_ids)),
            "score": final.ravel(),
        }
    )
    long = long[long.score >= params.threshold].sort_values(["image_id", "score"], ascending=[True, False])
    return long.groupby("image_id").head(params.max_tags).reset_index(drop=True)


def streamed_tags(glob_path: str, tiles_path: str, names: np.ndarray, params: TagParams) -> pd.DataFrame:
    """Ours: the rule's scoring, streamed by image id."""
    g_ids, glob = read_embeddings(glob_path)
    return score_tags(iter_view_batches(tiles_path, g_ids, glob, params.chunk), names, params)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="photos")
    parser.add_argument("--grid", type=int, default=3)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--labels", type=int, default=40, help="discovered names C")
    parser.add_argument("--chunk", type=int, default=1024, help="photos scored at a time (ours)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temp dir)")
    args = parser.parse_args()
    _return_freed_memory()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    params = TagParams(chunk=args.chunk)
    m = args.grid**2
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        glob_path, tiles_path, names = write_folder(Path(tmp), args.n, m, args.dim, args.labels)
        size = Path(tiles_path).stat().st_size / 2**20
        print(f"{args.n} photos x {m} tiles, D {args.dim}, {args.labels} names; tile file {size:.0f} MB")
        cpu = torch.device("cpu")
        ours, t_ours, mem_ours = measure(lambda: streamed_tags(glob_path, tiles_path, names, params), cpu)
        base, t_base, mem_base = measure(lambda: whole_table_tags(glob_path, tiles_path, names, params), cpu)
    key = ["image_id", "vocab_index"]
    same = ours[key].sort_values(key).to_numpy().tolist() == base[key].sort_values(key).to_numpy().tolist()
    print(f"ours (streamed by image id, chunk {args.chunk}): {t_ours:8.4f} s   peak +{mem_ours:7.0f} MB")
    print(f"baseline (whole tables, pandas long table): {t_base:8.4f} s   peak +{mem_base:7.0f} MB")
    print(f"ratio baseline / ours: memory {mem_base / mem_ours:.1f}x, time {t_base / t_ours:.2f}x")
    print(f"same tags: {same} ({len(ours)} tags on {ours.image_id.nunique()} photos)")


if __name__ == "__main__":
    main()
