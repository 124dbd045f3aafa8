"""Shared test helpers: unit-norm rows and planted worlds (points around known centres).

Imported as ``from helpers import ...`` (pytest puts ``tests/`` on the path through its conftest).
"""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (CLIP-like features)."""
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def planted_points(
    n: int, d: int, k: int, seed: int = 0, noise: float = 0.1, per_dim: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, D)`` float32 unit-norm points around ``k`` unit-norm centres, and labels ``i % k``.

    ``noise`` is the Gaussian noise per coordinate, divided by ``sqrt(d)`` when ``per_dim`` (so the
    noise norm is about ``noise`` in any dimension).
    """
    rng = np.random.RandomState(seed)
    centres = rng.randn(k, d)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.arange(n) % k
    x = centres[y] + (noise * rng.randn(n, d) / np.sqrt(d) if per_dim else noise * rng.randn(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), y
