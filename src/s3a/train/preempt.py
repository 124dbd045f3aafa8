"""Preemption and time limits: a signal makes training save a mid-epoch state and exit, to be retried.

Slurm ends a job at its time limit, on preemption or on ``scancel`` with SIGTERM, and SIGKILL
after a grace period (``KillWait``, often 30 s). A site can also send an earlier warning, e.g.
``sbatch --signal=USR1@300`` (SIGUSR1 to every process of the job's steps 300 s before the limit).
On any of :data:`DEFAULT_SIGNALS` (or the configured ones) the training finishes the optimizer step
it is in, saves a resume state of that step (model, optimiser, EMA teacher, position in the epoch,
every random state) and exits with :data:`EXIT_PREEMPTED`; the retried job continues from that step
and ends with the weights an uninterrupted run would have (each sample's augmentation is seeded by
``(seed, epoch, index)``, so the resumed part of an epoch draws what it would have drawn).

Cost: one tiny all-reduce per step across processes (all stop at the same step), nothing else.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

log = logging.getLogger(__name__)

#: the exit status of a run that saved its state on a signal (BSD's EX_TEMPFAIL: try again later)
EXIT_PREEMPTED = 75
#: SIGTERM: Slurm's time limit, preemption and scancel; SIGUSR1: the usual early warning
DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1")


class Preempted(Exception):
    """Raised by the training loop after it saved a mid-epoch state on a signal."""

    def __init__(self, signame: str, epoch: int, step_in_epoch: int, state_path: str) -> None:
        self.signame, self.epoch, self.step_in_epoch, self.state_path = (
            signame,
            epoch,
            step_in_epoch,
            state_path,
        )
        where = f"after step {step_in_epoch} of epoch {epoch}" if step_in_epoch else f"before epoch {epoch}"
        super().__init__(
            f"{signame} received: saved the state {where} to {state_path}; the same command (Snakemake's "
            "retry) goes on from there"
        )


class SignalFlag:
    """Which of ``signals`` arrived (the first one), set by handlers installed with :meth:`installed`."""

    def __init__(self, signals: Sequence[str] = DEFAULT_SIGNALS) -> None:
        unknown = [s for s in signals if not isinstance(getattr(signal, str(s), None), signal.Signals)]
        if unknown:
            raise ValueError(f"unknown signal name(s) {unknown}; use names such as SIGTERM, SIGUSR1")
        self.signals = [signal.Signals[s] for s in signals]
        self.received: str | None = None
        self._said = False

    def _handle(self, signum, frame) -> None:
        # only a flag: a handler that logs could deadlock on a lock the interrupted code holds
        if self.received is None:
            self.received = signal.Signals(signum).name

    @contextmanager
    def installed(self) -> Iterator[SignalFlag]:
        """Install the handlers for the block (main thread only; elsewhere nothing is installed)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self._handle) for s in self.signals}
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def agreed(self, all_reduce_max) -> bool:
        """True when any process received a signal (``all_reduce_max`` combines the ranks' flags)."""
        stop = bool(all_reduce_max(1.0 if self.received else 0.0))
        if stop and not self._said:
            self._said = True
            log.warning("%s received: the state is saved after the current step", self.received or "a signal")
        return stop


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation in one epoch (independent of workers and resumes)."""
    return (seed * 1_000_003 + epoch * 7_919 + index * 104_729 + 17) % (2**31 - 1)


@contextmanager
def seeded(value: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's global generators for a block (the transforms draw from
    them), restoring their states afterwards in the main process (workers need no restore)."""
    in_worker = torch.utils.data.get_worker_info() is not None
    saved = None if in_worker else (random.getstate(), np.random.get_state(), torch.get_rng_state())
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
    try:
        yield
    finally:
        if saved is not None:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


def random_states() -> dict:
    """Every global random state of this process (Python, NumPy, torch CPU and CUDA)."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict) -> None:
    """Restore what :func:`random_states` returned."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class SkipSampler(torch.utils.data.Sampler):
    """The indices of ``sampler`` after the first ``skip`` (a resumed epoch starts where it stopped)."""

    def __init__(self, sampler: torch.utils.data.Sampler, skip: int) -> None:
        self.sampler, self.skip = sampler, int(skip)

    def __iter__(self) -> Iterator[int]:
        indices = iter(self.sampler)
        for _ in range(self.skip):
            next(indices, None)
        return indices

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)  # type: ignore[arg-type]


def epoch_loader(
    data: torch.utils.data.Dataset,
    env,
    epoch: int,
    seed: int,
    per_rank: int,
    skip_batches: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """The loader of one epoch: this process's shard of a seeded shuffle (``DistributedSampler`` with
    ``seed`` and ``epoch``), its first ``skip_batches`` batches left out (a resumed epoch), the views
    of ``data`` seeded for ``epoch`` (``data.set_epoch``), pinned memory on CUDA."""
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(data, env.world_size, env.rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    data.set_epoch(epoch)
    return DataLoader(
        data,
        per_rank,
        sampler=SkipSampler(sampler, skip_batches * per_rank),
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=env.device.type == "cuda",
        generator=torch.Generator().manual_seed(seed * 1009 + epoch),
        collate_fn=getattr(data, "collate", None),  # a dataset may bring its own (ViewBytes)
    )
