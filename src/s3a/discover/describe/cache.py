"""The SQLite cache of every LLM answer (under ``resources/``: it survives failed jobs and reruns)."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: the mount table read to find the filesystem of the cache
MOUNTS = "/proc/self/mounts"

#: filesystem types (as /proc/mounts names them) on which SQLite's WAL mode is unsafe: its shared
#: memory index needs every writer on one machine. FUSE filesystems (``fuse.*``) count as network.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "glusterfs",
        "afs", "9p", "panfs", "pvfs2", "orangefs", "wekafs", "fuse", "fuseblk",
    }
)  # fmt: skip


def filesystem_type(path: str | os.PathLike[str], mounts: str = MOUNTS) -> str:
    """Type of the filesystem holding ``path`` (the longest mount point above it), or ``""``.

    Reads ``mounts`` (Linux's ``/proc/self/mounts`` format); ``""`` when it cannot be read.
    """
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return ""
    target = os.path.realpath(path)
    best, kind = "", ""
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def journal_mode(path: str | os.PathLike[str], setting: str = "auto", mounts: str = MOUNTS) -> str:
    """The SQLite journal mode of a cache at ``path``, ``wal`` or ``delete``; ``setting`` may force one.

    ``auto`` picks ``delete`` on a network filesystem (:data:`NETWORK_FILESYSTEMS`), where WAL's
    shared-memory index would let two nodes corrupt the file, and ``wal`` elsewhere.
    """
    if setting != "auto":
        return setting
    kind = filesystem_type(Path(path).parent, mounts)
    network = kind in NETWORK_FILESYSTEMS or kind.startswith("fuse.")
    return "delete" if network else "wal"


# -------------------------------------------------------------------------------------------- cache


class AnswerCache:
    """SQLite cache of valid LLM answers keyed by ``(model, prompt, temperature, repeat)``.

    One table; the prompt is stored in full next to its SHA-256 (the key column), and so is the model
    id the server reported for the answer (``served_model``; a cache written before that column
    existed is upgraded in place). A busy time-out lets two describe jobs share the file; the journal
    is WAL on a local disk and SQLite's rollback journal on a network filesystem
    (:func:`journal_mode`). Writes are serialised by a lock and committed one by one, so every answer
    is on disk as soon as it arrives. The API key is never stored.
    """

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS llm_answers ("
        " model TEXT NOT NULL, prompt_sha256 TEXT NOT NULL, temperature REAL NOT NULL,"
        " repeat INTEGER NOT NULL, prompt TEXT NOT NULL, answer TEXT NOT NULL, served_model TEXT,"
        " PRIMARY KEY (model, prompt_sha256, temperature, repeat))"
    )

    def __init__(self, path: str | os.PathLike[str], journal: str = "auto") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.journal = journal_mode(self.path, journal)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False)
        with self._lock:
            self._conn.execute(f"PRAGMA journal_mode={self.journal.upper()}")
            self._conn.execute(self._SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(llm_answers)")}
            if "served_model" not in columns:
                self._conn.execute("ALTER TABLE llm_answers ADD COLUMN served_model TEXT")
            self._conn.commit()

    @staticmethod
    def _digest(prompt: str) -> str:
        return hashlib.sha256(prompt.encode("utf-8")).hexdigest()

    def get_entry(
        self, model: str, prompt: str, temperature: float, repeat: int
    ) -> tuple[str, str | None] | None:
        """``(answer, model id the server reported or None)``, or None when not cached."""
        with self._lock:
            row = self._conn.execute(
                "SELECT answer, served_model FROM llm_answers"
                " WHERE model=? AND prompt_sha256=? AND temperature=? AND repeat=?",
                (model, self._digest(prompt), float(temperature), int(repeat)),
            ).fetchone()
        return None if row is None else (str(row[0]), None if row[1] is None else str(row[1]))

    def get(self, model: str, prompt: str, temperature: float, repeat: int) -> str | None:
        entry = self.get_entry(model, prompt, temperature, repeat)
        return None if entry is None else entry[0]

    def put(
        self,
        model: str,
        prompt: str,
        temperature: float,
        repeat: int,
        answer: str,
        served_model: str | None = None,
    ) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO llm_answers"
                " (model, prompt_sha256, temperature, repeat, prompt, answer, served_model)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model, self._digest(prompt), float(temperature), int(repeat), prompt, answer, served_model),
            )

    def delete(self, model: str, prompt: str, temperature: float, repeat: int) -> None:
        """Forget one answer (a cluster given up under ``on_failure: wordnet``)."""
        with self._lock, self._conn:
            self._conn.execute(
                "DELETE FROM llm_answers WHERE model=? AND prompt_sha256=? AND temperature=? AND repeat=?",
                (model, self._digest(prompt), float(temperature), int(repeat)),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM llm_answers").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
