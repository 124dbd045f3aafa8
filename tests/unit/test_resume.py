"""Resume files of the multi-label learners: fingerprints and stale states."""

from __future__ import annotations

import numpy as np
import torch

import s3a.resume as resume


def test_fingerprint_reads_memmaps_in_blocks_and_sees_every_change(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(50, 4, 3)).astype(np.float16)
    path = tmp_path / "tokens.npy"
    np.save(path, tokens)
    mapped = np.load(path, mmap_mode="r")
    whole = resume.fingerprint(("a", 1), tokens)
    monkeypatch.setattr(resume, "HASH_CHUNK_BYTES", 7 * tokens[:1].nbytes)  # 8 blocks, a ragged last
    assert resume.fingerprint(("a", 1), mapped) == whole
    changed = tokens.copy()
    changed[-1, -1, -1] += 1
    assert resume.fingerprint(("a", 1), changed) != whole
    assert resume.fingerprint(("a", 2), tokens) != whole
    assert resume.fingerprint(("a", 1), tokens.astype(np.float32)) != whole
    assert resume.fingerprint(("a", 1), tokens.reshape(50, 12)) != whole


def test_load_state_ignores_other_fingerprints(tmp_path):
    path = str(tmp_path / "sub" / "state.pt")
    assert resume.load_state(path, "x") is None
    resume.save_state(path, {"fingerprint": "x", "w": torch.ones(2)})
    assert torch.equal(resume.load_state(path, "x")["w"], torch.ones(2))
    assert resume.load_state(path, "y") is None
