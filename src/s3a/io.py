"""Parquet input/output with declared schemas and atomic writes.

Every table the workflow writes goes through :func:`write_table`, which writes to a temporary file
beside the target and renames it, so a killed job never leaves a half-written output behind.
Embeddings are stored as one ``fixed_size_list<float32>`` column next to an ``image_id`` (or
``vocab_index``) column, so a reader gets a contiguous ``(N, D)`` array back without a Python loop.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "atomic_path",
    "current_umask",
    "new_file_mode",
    "write_table",
    "read_table",
    "embeddings_table",
    "write_embeddings",
    "read_embeddings",
]


def current_umask() -> int:
    """The process's file-creation mask, read without changing it where the OS allows.

    Linux reports it in ``/proc/self/status``; elsewhere it is read by setting and restoring it (not
    thread-safe, but done before any worker thread of ours writes files).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(directory: bool = False) -> int:
    """The mode a new file (``0o666``) or folder (``0o777``) gets under the current umask.

    ``tempfile.mkstemp``/``mkdtemp`` create ``0o600``/``0o700`` whatever the umask; an output renamed
    from such a temporary would be unreadable to the rest of a lab sharing a results tree, so
    :class:`atomic_path` and the gallery give their temporaries this mode before the rename.
    """
    return (0o777 if directory else 0o666) & ~current_umask()


class atomic_path:  # noqa: N801 - used like a function: ``with atomic_path(p) as tmp``
    """Context manager yielding a temporary path that is renamed onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched. The file that
    lands has the permissions the umask gives any new file (:func:`new_file_mode`), not the
    temporary's ``0o600``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            os.fchmod(fd, new_file_mode())
        finally:
            os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def write_table(table: pd.DataFrame | pa.Table, path: str | os.PathLike[str]) -> None:
    """Write a DataFrame or Arrow table to Parquet atomically (temp file, then rename)."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file into a DataFrame, optionally only ``columns``."""
    return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()


def embeddings_table(ids: np.ndarray, embeddings: np.ndarray, id_column: str = "image_id") -> pa.Table:
    """Arrow table with an int64 ``id_column`` and a ``fixed_size_list<float32>`` ``embedding`` column.

    Args:
        ids: shape ``(N,)`` integer ids.
        embeddings: shape ``(N, D)`` array, stored as float32.
    """
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or len(ids) != emb.shape[0]:
        raise ValueError(f"expected ids (N,) and embeddings (N, D); got {np.shape(ids)} and {emb.shape}")
    flat = pa.array(emb.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])
    return pa.table({id_column: pa.array(np.asarray(ids, dtype=np.int64)), "embedding": column})


def write_embeddings(
    ids: np.ndarray, embeddings: np.ndarray, path: str | os.PathLike[str], id_column: str = "image_id"
) -> None:
    """Write ``(ids, embeddings)`` as Parquet (see :func:`embeddings_table`)."""
    write_table(embeddings_table(ids, embeddings, id_column), path)


def read_embeddings(
    path: str | os.PathLike[str], id_column: str = "image_id"
) -> tuple[np.ndarray, np.ndarray]:
    """Read embeddings written by :func:`write_embeddings`.

    Returns:
        ``(ids, embeddings)`` with shapes ``(N,)`` int64 and ``(N, D)`` float32.
    """
    table = pq.read_table(path)
    ids = table.column(id_column).to_numpy()
    col = table.column("embedding").combine_chunks()
    dim = col.type.list_size
    flat = col.values.to_numpy(zero_copy_only=False)
    return ids.astype(np.int64), flat.reshape(-1, dim).astype(np.float32, copy=False)
