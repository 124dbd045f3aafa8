"""The tile table and the pairing of an image's views (spec 4), without torch.

:func:`tiles_table` / :func:`read_tiles` are the long ``ml/tiles/{split}.parquet`` table of
:mod:`s3a.multilabel.views.tiles`; :func:`split_rows` one split of a manifest. ``embed/{split}`` and
``ml/tiles/{split}`` each skip the images their reader could not use (logged there):
:func:`align_views` pairs the global and the tile views by ``image_id`` and refuses two different
image sets with one message naming the ids, so that no row is silently mismatched. The rules that
only read views (``init_pseudolabels``, ``openvocab_labels``) import this module, never torch.

Cost: :func:`read_tiles` holds the ``(N, M, D)`` embeddings (COCO train 82k x 9 x 512: 1.5 GB float32,
half in float16); the pairing is a sort of the ids. :func:`iter_view_batches` streams a tile file a
few photos at a time (two record batches in memory whatever the file's size), for the photo folder's
tags.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def tiles_table(
    image_ids: np.ndarray, boxes: np.ndarray, embeddings: np.ndarray, dtype: str = "float32"
) -> pa.Table:
    """The long ``ml/tiles/{split}.parquet`` table: ``image_id int64, tile int8, box
    fixed_size_list<int32>[4], embedding fixed_size_list<float32|float16>[D]``, sorted by
    (image_id, tile). Shapes: ids ``(N,)``, boxes ``(N, M, 4)``, embeddings ``(N, M, D)``."""
    n, m, d = embeddings.shape
    order = np.argsort(np.asarray(image_ids, dtype=np.int64), kind="stable")
    ids = np.repeat(np.asarray(image_ids, dtype=np.int64)[order], m)
    emb = np.ascontiguousarray(embeddings[order].reshape(n * m, d), dtype=np.dtype(dtype))
    box = np.ascontiguousarray(boxes[order].reshape(n * m, 4), dtype=np.int32)
    return pa.table(
        {
            "image_id": pa.array(ids),
            "tile": pa.array(np.tile(np.arange(m, dtype=np.int8), n)),
            "box": pa.FixedSizeListArray.from_arrays(pa.array(box.reshape(-1)), 4),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), d),
        }
    )


def read_tiles(path) -> tuple[np.ndarray, np.ndarray]:
    """``(image_ids (N,), embeddings (N, M, D) float32)`` from a :func:`tiles_table` file."""
    table = pq.read_table(path, columns=["image_id", "tile", "embedding"])
    tiles = table.column("tile").to_numpy()
    m = int(tiles.max()) + 1 if len(tiles) else 1
    col = table.column("embedding").combine_chunks()
    emb = col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, m, col.type.list_size)
    ids = table.column("image_id").to_numpy()[::m].astype(np.int64)
    return ids, emb


def split_rows(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The manifest rows of ``split``; a split without images is an error naming the splits there."""
    rows = manifest[manifest["split"] == split]
    if rows.empty:
        raise ValueError(
            f"the manifest has no images in split {split!r}; splits: {sorted(set(manifest.split))}"
        )
    return rows


def align_views(
    image_ids: np.ndarray,
    global_emb: np.ndarray,
    tile_ids: np.ndarray | None = None,
    tile_emb: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(ids, global (N, D), tiles (N, M, D) or None)`` sorted by ``image_id`` and paired by id.

    Raises:
        ValueError: repeated ids, or the global embeddings and the tiles hold different images
            (counts and example ids of each side; re-run both embedding rules).
    """
    ids = np.asarray(image_ids, dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("the global embeddings repeat image ids")
    order = np.argsort(ids, kind="stable")
    ids, glob = ids[order], np.asarray(global_emb)[order]
    if tile_ids is None:
        return ids, glob, None
    tids = np.asarray(tile_ids, dtype=np.int64)
    if len(np.unique(tids)) != len(tids):
        raise ValueError("the tile embeddings repeat image ids")
    torder = np.argsort(tids, kind="stable")
    if not np.array_equal(ids, tids[torder]):
        only_g, only_t = np.setdiff1d(ids, tids), np.setdiff1d(tids, ids)
        raise ValueError(
            f"embed/{{split}} ({len(ids)} images) and ml/tiles/{{split}} ({len(tids)} images) hold "
            f"different images: {len(only_g)} only in the embeddings (e.g. {only_g[:5].tolist()}), "
            f"{len(only_t)} only in the tiles (e.g. {only_t[:5].tolist()}); re-run both rules on the "
            "same manifest (an image too small for the tile grid is skipped by the tiles only)"
        )
    if glob.shape[1] != tile_emb.shape[2]:
        raise ValueError(f"global embeddings {glob.shape} and tiles {tile_emb.shape} differ in D")
    return ids, glob, np.asarray(tile_emb)[torder]


def tile_count(tiles_path: str) -> int:
    """M, the tiles per photo of a ``tiles_table`` file (reads only its ``tile`` column, 1 byte a row)."""
    tile = pq.read_table(tiles_path, columns=["tile"]).column("tile").to_numpy()
    return int(tile.max()) + 1 if len(tile) else 0


def iter_view_batches(
    tiles_path: str,
    global_ids: np.ndarray,
    global_emb: np.ndarray,
    chunk: int = 1024,
    keep: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The photos of a tile file, ``chunk`` at a time: ``(ids (b,), global (b, D), tiles (b, M, D))``.

    The tile file (:func:`s3a.multilabel.views.tables.tiles_table`: ``M`` rows per photo, sorted by
    ``(image_id, tile)``) is read in record batches of about ``chunk · M`` rows; a photo cut by a
    batch boundary is carried to the next one, so memory is two batches whatever the file's size.
    Photos without a global embedding (or not in ``keep``, when given) are left out.

    Args:
        global_ids: ``(N,)`` ids of ``global_emb``'s rows.
        global_emb: ``(N, D)`` global embeddings.
        keep: optional ids to restrict to.

    Raises:
        ValueError: the file is not sorted by image id with ``M`` rows per photo.
    """
    m = tile_count(tiles_path)
    if m == 0:
        return
    row_of = pd.Index(np.asarray(global_ids, np.int64))
    wanted = None if keep is None else pd.Index(np.asarray(keep, np.int64))
    carry_ids, carry_emb = np.zeros(0, np.int64), None
    last = None
    # buffered reads: a tile file is one row group up to 1M rows (write_table's default), whose column
    # chunk an unbuffered reader loads whole (+0.7 GB at 30k photos); no threads: no row group read ahead
    batches = pq.ParquetFile(tiles_path, buffer_size=1 << 23, pre_buffer=False).iter_batches(
        batch_size=chunk * m, columns=["image_id", "embedding"], use_threads=False
    )
    for batch in batches:
        col = batch.column(1)
        emb = col.values.to_numpy(zero_copy_only=False).reshape(len(batch), col.type.list_size)
        ids = np.concatenate([carry_ids, batch.column(0).to_numpy().astype(np.int64)])
        emb = emb if carry_emb is None else np.concatenate([carry_emb, emb])
        cut = len(ids) // m * m
        carry_ids, carry_emb = ids[cut:], emb[cut:]
        if not cut:
            continue
        photo = ids[:cut].reshape(-1, m)
        first = photo[:, 0]
        if (
            (photo != first[:, None]).any()
            or (np.diff(first) <= 0).any()
            or (last is not None and first[0] <= last)
        ):
            raise ValueError(
                f"{tiles_path}: tiles must be sorted by (image_id, tile) with {m} rows per photo"
            )
        last = first[-1]
        row = row_of.get_indexer(first)
        ok = row >= 0
        if wanted is not None:
            ok &= wanted.get_indexer(first) >= 0
        if ok.any():
            tiles = emb[:cut].reshape(-1, m, emb.shape[1])[ok].astype(np.float32, copy=False)
            yield first[ok], np.asarray(global_emb[row[ok]], np.float32), tiles
    if len(carry_ids):
        raise ValueError(f"{tiles_path}: {len(carry_ids)} trailing rows do not make a photo of {m} tiles")
