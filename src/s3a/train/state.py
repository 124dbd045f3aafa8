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
    payload = [params.model_dump(), dataclasses.asdict(spec), paths.manifest, paths.classifier, world]
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
    multi-label image learners' state (:mod:`s3a.multilabel.imageloop`) use it."""

    fingerprint: str

    def save(self, path: str | Path) -> None:
        """Write the state atomically (a plain dict of these fields, read by :meth:`load`)."""
        save_state(str(path), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def load(cls, path: str | Path, fingerprint: str):
        """The state at ``path`` when it exists and belongs to ``fingerprint``, else None."""
        state = load_state(str(path), fingerprint)
        return None if state is None else cls(**{f.name: state[f.name] for f in dataclasses.fields(cls)})


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
