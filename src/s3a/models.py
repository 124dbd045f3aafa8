"""open_clip model loading: a model key from config -> (model, image transform, tokenizer).

A model entry names an open_clip architecture and where its weights come from:

* a pretrained tag known to open_clip (``openai``, ``laion2b_s34b_b88k``, ...): downloaded on first
  use into open_clip's cache (users have internet; this needs no change to run offline once cached);
* a local checkpoint file (``.pt``, ``.bin``, ``.safetensors``), loaded through the same
  ``pretrained=<file>`` path open_clip uses for tags;
* ``local-dir:/path`` or ``hf-hub:org/repo`` in ``arch``, handled by open_clip itself.

The project registers one extra architecture, ``s3a-tiny`` (a 2-layer ViT with a 32-d embedding),
so the tests and the demo run on a CPU with randomly initialised weights saved by
:func:`save_random_checkpoint`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s3a.io import atomic_path

if TYPE_CHECKING:  # torch is imported where it is used, so the workflow can read ModelSpec cheaply
    import torch

log = logging.getLogger(__name__)

TINY_ARCH = "s3a-tiny"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
_configs_registered = False


class ModelError(Exception):
    """A model entry that cannot be loaded (unknown architecture or tag, missing file, no network)."""


@dataclass(frozen=True)
class ModelSpec:
    """One model entry of the config.

    Attributes:
        arch: open_clip architecture name (``ViT-B-16``), or a ``local-dir:``/``hf-hub:`` identifier.
        pretrained: open_clip pretrained tag, a local checkpoint path, or ``None`` for random weights.
        cache_dir: where open_clip stores downloaded weights (``None``: its default cache).
    """

    arch: str
    pretrained: str | None = None
    cache_dir: str | None = None

    @property
    def is_local_file(self) -> bool:
        """Whether ``pretrained`` names a checkpoint file rather than a tag."""
        return bool(self.pretrained) and str(self.pretrained).endswith(_CHECKPOINT_SUFFIXES)


@dataclass
class LoadedClip:
    """A loaded CLIP model with its evaluation transform and tokenizer."""

    model: torch.nn.Module
    preprocess: Any
    tokenizer: Any
    device: torch.device


def register_model_configs() -> None:
    """Add the project's architectures (``s3a-tiny``) to open_clip's registry (idempotent)."""
    global _configs_registered
    if _configs_registered:
        return
    import open_clip

    open_clip.add_model_config(Path(str(resources.files("s3a") / "model_configs")))
    _configs_registered = True


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``cuda`` when present unless ``device`` says otherwise (``"cpu"``, ``"cuda:1"``, ...)."""
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_spec(spec: ModelSpec) -> None:
    import open_clip

    if spec.arch.startswith(("local-dir:", "hf-hub:")):
        return
    if spec.arch not in open_clip.list_models():
        raise ModelError(
            f"model arch {spec.arch!r} is not an open_clip architecture; see open_clip.list_models() "
            f"(e.g. ViT-B-16, ViT-L-14) or use {TINY_ARCH!r} for tests"
        )
    if spec.is_local_file:
        if not Path(spec.pretrained).is_file():
            raise ModelError(
                f"model {spec.arch}: checkpoint file {spec.pretrained} does not exist "
                "(give an existing file, or an open_clip pretrained tag such as 'openai')"
            )
    elif spec.pretrained:
        tags = open_clip.list_pretrained_tags_by_model(spec.arch)
        if spec.pretrained not in tags:
            raise ModelError(
                f"model {spec.arch}: pretrained {spec.pretrained!r} is neither a checkpoint file "
                f"nor a known open_clip tag; known tags: {', '.join(tags) or 'none'}"
            )


def load_clip(spec: ModelSpec, device: str | torch.device | None = None) -> LoadedClip:
    """Create the model, load its weights, and return it in eval mode on ``device``.

    Raises:
        ModelError: unknown architecture or tag, missing checkpoint file, or a failed download.
    """
    import open_clip

    register_model_configs()
    _check_spec(spec)
    dev = pick_device(device)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.arch, pretrained=spec.pretrained or None, cache_dir=spec.cache_dir, device=dev
        )
    except (OSError, RuntimeError) as exc:
        raise ModelError(
            f"model {spec.arch} with pretrained={spec.pretrained!r} could not be loaded: {exc}. "
            "If the weights must be downloaded, run once on a machine with internet access "
            "(they are cached) or point `pretrained` at a local checkpoint file."
        ) from exc
    model.eval()
    tokenizer = open_clip.get_tokenizer(spec.arch)
    log.info("loaded %s (pretrained=%s) on %s", spec.arch, spec.pretrained, dev)
    return LoadedClip(model=model, preprocess=preprocess, tokenizer=tokenizer, device=dev)


def save_random_checkpoint(arch: str, path: str | os.PathLike[str], seed: int = 0) -> None:
    """Initialise ``arch`` with random weights from ``seed`` and save its state dict to ``path``.

    The file loads through ``ModelSpec(arch, pretrained=path)`` exactly like downloaded weights.
    """
    import open_clip
    import torch

    register_model_configs()
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
