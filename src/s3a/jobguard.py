"""One trainer per state file, and no trainer outliving its job.

A training job is ``snakemake -> bash -> torchrun -> worker``. torchrun starts each worker in a new
session, so a hard kill of the job's process group (Snakemake killed with ``kill -9``, a terminal
closed) used to leave the worker running with PPID 1, still writing the resume state and the
outputs, and a rerun could then put a second trainer on the same state file. Two guards, used by
``python -m s3a.train`` and ``python -m s3a.multilabel.imagetrain``:

- :func:`die_with_parent`: under torchrun, the kernel sends the worker ``SIGTERM`` when torchrun
  dies (Linux ``prctl(PR_SET_PDEATHSIG)``; elsewhere a no-op). A plain ``python -m s3a.train`` is
  left alone (it may be run under ``nohup``).
- :func:`hold_state_lock`: an exclusive ``flock`` on ``<state>.lock`` beside the resume state, held
  for the whole run (taken once the inputs are checked, before any model is loaded). A second
  trainer on the same state stops at once with one line naming the holder's process id. The kernel
  releases the lock when its holder dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["StateLockedError", "die_with_parent", "hold_state_lock"]

#: linux/prctl.h
PR_SET_PDEATHSIG = 1


class StateLockedError(RuntimeError):
    """Another process trains on the same resume state."""


def die_with_parent(sig: int = signal.SIGTERM, force: bool = False) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies; True when armed.

    Armed only under torchrun (its ``TORCHELASTIC_RUN_ID`` variable) unless ``force``, and only on
    Linux. If the parent is already gone (PPID 1), the process exits at once.
    """
    if not (force or "TORCHELASTIC_RUN_ID" in os.environ) or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() == 1:  # the parent died before the signal was armed
        os.kill(os.getpid(), sig)
    return True


@contextlib.contextmanager
def hold_state_lock(state: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the exclusive lock of the resume state ``state`` (the file ``<state>.lock``).

    Only the process of global rank 0 locks (the other ranks of a torchrun share its state).

    Raises:
        StateLockedError: another process holds it (the message names the state and that process).
    """
    import fcntl

    lock = Path(f"{os.fspath(state)}.lock")
    if os.environ.get("RANK", "0") != "0":
        yield lock
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StateLockedError(
                f"another trainer (process {holder}) is training on {os.fspath(state)}; wait for it "
                f"to finish or stop it (kill {holder}), then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield lock
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a waiting trainer)
