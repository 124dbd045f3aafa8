"""The resume state of a self-training run: a killed run restarts from its last finished epoch."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from s3a.models import ModelSpec
from s3a.resume import load_state, save_state
from s3a.train.params import TrainParams, TrainPaths

log = logging.getLogger(__name__)


def run_fingerprint(paths: TrainPaths, params: TrainParams, spec: ModelSpec, world: int) -> str:
    """Identity of a run: a resume state of another configuration is never reused."""
    digest = hashlib.sha256(Path(paths.structural_labels).read_bytes())
    settings = params.model_dump(exclude={"checkpoint_signals"})  # how a run stops is not what it computes
    payload = [settings, dataclasses.asdict(spec), paths.manifest, paths.classifier, world]
    digest.update(json.dumps(payload, sort_keys=True).encode())
    return digest.hexdigest()


def seed_everything(seed: int, epoch: int, rank: int) -> int:
    """Seed Python, NumPy and torch from (seed, epoch, rank): a resumed epoch draws what it drew before."""
    value = (seed * 1_000_003 + epoch * 1009 + rank) % (2**31)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
    return value


class SavedState:
    """Save/load of a resume-state dataclass with a ``fingerprint`` field (a plain dict of its fields,
    written atomically; a state of another run is ignored on load). :class:`ResumeState` and the
    multi-label image learners' state (:mod:`s3a.multilabel.imagetrain.loop`) use it."""

    fingerprint: str

    def save(self, path: str | Path) -> None:
        """Write the state atomically (a plain dict of these fields, read by :meth:`load`)."""
        save_state(str(path), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def load(cls, path: str | Path, fingerprint: str):
        """The state at ``path`` when it exists and belongs to ``fingerprint``, else None."""
        state = load_state(str(path), fingerprint)
        if state is None:
            return None
        # a field added since the state was written keeps its default (an epoch-boundary state)
        return cls(**{f.name: state[f.name] for f in dataclasses.fields(cls) if f.name in state})


@dataclass
class ResumeState(SavedState):
    """Everything a killed run needs to go on after its last finished epoch (saved after every epoch
    under ``resources/``, outside the declared outputs, which Snakemake deletes on failure).

    Attributes:
        fingerprint: :func:`run_fingerprint` of the run that wrote it; another run's state is ignored.
        epoch: epochs finished; the run goes on with this one.
        step: optimizer steps taken (the cosine schedule and the EMA ramp go on from it).
        student, teacher, optimizer: ``state_dict()`` of each.
        history: one row per finished epoch (``history.parquet``).
        labels, partition: ``(N,)`` structural labels and vote partition of the last epoch.
        test_predictions: per evaluated epoch, the test predictions (``test_epochs.parquet``).
        step_in_epoch: optimizer steps done in epoch ``epoch`` (0: saved at an epoch boundary; more:
            saved on a signal, :mod:`s3a.train.preempt`, and the epoch goes on after that step).
        epoch_sums: the epoch's running sums (loss, loss_ins, loss_str, confident, samples) over all
            processes at ``step_in_epoch``.
        previous_labels: the structural labels before the epoch's vote (its ``structural_changed``).
        teacher_top1: the teacher's train top-1 computed at the start of the epoch.
        lr: the learning rate of the epoch's last step so far (the epoch's ``lr`` in the history).
        random_states: the main process's random states at ``step_in_epoch``
            (:func:`s3a.train.preempt.random_states`).
        interruptions: every signal the run stopped on so far: ``signal``, ``epoch``,
            ``step_in_epoch`` and ``step`` (global) of the state it saved; the retry resumed there.
    """

    fingerprint: str
    epoch: int
    step: int
    student: dict
    teacher: dict
    optimizer: dict
    history: list[dict]
    labels: np.ndarray
    partition: np.ndarray
    test_predictions: list[pd.DataFrame]
    step_in_epoch: int = 0
    epoch_sums: list[float] = dataclasses.field(default_factory=list)
    previous_labels: np.ndarray | None = None
    teacher_top1: float = float("nan")
    lr: float = float("nan")
    random_states: dict | None = None
    interruptions: list[dict] = dataclasses.field(default_factory=list)
