"""Resume files of every learner (self-training, the multi-label ``linear``, ``mldecoder`` and image
learners): a killed run goes on after its last finished epoch and ends identical to an uninterrupted
one.

A state is a plain dict saved with ``torch.save`` after every epoch, atomically, under
``resources/`` (outside the rule's outputs, which Snakemake deletes when a job fails). It carries a
:func:`fingerprint` of the settings and the inputs; a state written for other settings or inputs is
ignored and the run starts afresh.
"""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np
import torch

__all__ = ["fingerprint", "save_state", "load_state"]

log = logging.getLogger(__name__)
#: bytes hashed per read, so a memory-mapped input is never loaded whole
HASH_CHUNK_BYTES = 1 << 26


def fingerprint(settings: object, *arrays: np.ndarray) -> str:
    """SHA-1 of ``repr(settings)`` (frozen dataclasses) and of every array's shape, dtype and bytes.

    Arrays are read in row blocks of about 64 MB, so a ``numpy.memmap`` of patch tokens is hashed
    with bounded memory. Cost: one pass over the inputs (~1 s per GB; NUS-WIDE's 30 GB of float16
    tokens: tens of seconds, once per run).
    """
    digest = hashlib.sha1(repr(settings).encode())
    for array in arrays:
        digest.update(repr((array.shape, str(array.dtype))).encode())
        rows = max(1, HASH_CHUNK_BYTES // max(1, array[:1].nbytes))
        for s in range(0, len(array), rows):
            digest.update(np.ascontiguousarray(array[s : s + rows]).tobytes())
    return digest.hexdigest()


def save_state(path: str, state: dict) -> None:
    """Write ``state`` (tensors, numpy arrays, plain Python) to ``path`` atomically."""
    from s3a.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str, expected: str, device: torch.device | str = "cpu") -> dict | None:
    """The state at ``path`` (tensors on ``device``) when it exists and its ``fingerprint`` is
    ``expected``; else ``None`` (a stale state is logged and left to be overwritten)."""
    if not os.path.isfile(path):
        return None
    state = torch.load(path, map_location=device, weights_only=False)
    if state.get("fingerprint") != expected:
        log.info("ignoring %s: written for other settings or inputs", path)
        return None
    return state
