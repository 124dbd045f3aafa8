"""Where heavy work runs: the one device choice of every step."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["pick_device"]


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``cuda`` when present unless ``device`` says otherwise (``"cpu"``, ``"cuda:1"``, ...)."""
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
