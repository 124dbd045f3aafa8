"""Where heavy work runs: the one device choice of every step."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["pick_device", "tensor_view"]


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``cuda`` when present unless ``device`` says otherwise (``"cpu"``, ``"cuda:1"``, ...)."""
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def tensor_view(array: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy(array)`` for an array this code only reads, read-only ones included.

    Tables read from Parquet and memory maps are read-only; torch then warns that writing to the
    tensor would be undefined. Nothing here writes to it, so the warning is silenced instead of
    copying the array (at ImageNet-1K scale, 1.28M x 512 float32 is 2.6 GB). Moving the tensor to a
    GPU copies it anyway.
    """
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)
