"""open_clip model loading: a model key from config -> (model, image transform, tokenizer).

A model entry names an open_clip architecture and where its weights come from:

* a pretrained tag known to open_clip (``openai``, ``laion2b_s34b_b88k``, ...): downloaded on first
  use into open_clip's cache (users have internet; this needs no change to run offline once cached);
* a local checkpoint file (``.pt``, ``.bin``, ``.safetensors``), loaded through the same
  ``pretrained=<file>`` path open_clip uses for tags; for an architecture that has OpenAI weights
  (trained with QuickGELU) and others (GELU), the entry must say which with ``quick_gelu``;
* ``local-dir:/path`` or ``hf-hub:org/repo`` in ``arch``, handled by open_clip itself.

The model built always matches its weights (:func:`build_config`): when open_clip's pretrained table
says a tag was trained with QuickGELU (the OpenAI weights), the model is built with QuickGELU (open_clip
itself only warns and builds GELU), and the preprocessing (input size, mean, std, interpolation) is the
tag's. A combination that cannot be made to match is a :class:`ModelError`, not a warning.

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

from s3a.device import pick_device  # noqa: F401 (re-exported: s3a.models.pick_device)
from s3a.io import atomic_path
from s3a.logs import UserError

if TYPE_CHECKING:  # torch is imported where it is used, so the workflow can read ModelSpec cheaply
    import torch

log = logging.getLogger(__name__)

TINY_ARCH = "s3a-tiny"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
_configs_registered = False


class ModelError(UserError):
    """A model entry that cannot be loaded (unknown architecture or tag, missing file, no network)."""


@dataclass(frozen=True)
class ModelSpec:
    """One model entry of the config.

    Attributes:
        arch: open_clip architecture name (``ViT-B-16``), or a ``local-dir:``/``hf-hub:`` identifier.
        pretrained: open_clip pretrained tag, a local checkpoint path, or ``None`` for random weights.
        cache_dir: where open_clip stores downloaded weights (``None``: its default cache).
        quick_gelu: activation the weights were trained with: ``None`` = what open_clip's pretrained
            table says for a tag (the architecture's default for a file or random weights);
            ``True``/``False`` state it, e.g. for a local file of OpenAI weights (``True``). A value
            that contradicts the tag's is an error.
    """

    arch: str
    pretrained: str | None = None
    cache_dir: str | None = None
    quick_gelu: bool | None = None

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

    @property
    def preprocess_cfg(self) -> dict[str, Any]:
        """The model's preprocessing: ``size`` (int), ``mean``, ``std``, ``interpolation``.

        Every transform built for this model (evaluation and the training views) takes these values.
        """
        return preprocess_config(self.model)


@dataclass(frozen=True)
class BuildConfig:
    """How a model entry must be built so the architecture matches its weights.

    Attributes:
        quick_gelu: build with QuickGELU (``x * sigmoid(1.702 x)``) instead of GELU.
        mean, std, interpolation, resize_mode: the weights' preprocessing from open_clip's
            pretrained table, or ``None`` where it says nothing (open_clip's defaults apply).
    """

    quick_gelu: bool
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    resize_mode: str | None = None


def register_model_configs() -> None:
    """Add the project's architectures (``s3a-tiny``) to open_clip's registry (idempotent)."""
    global _configs_registered
    if _configs_registered:
        return
    import open_clip

    open_clip.add_model_config(Path(str(resources.files("s3a") / "model_configs")))
    _configs_registered = True


def load_trained(
    spec: ModelSpec, visual: str | os.PathLike[str] | None = None, device: str | torch.device | None = None
) -> LoadedClip:
    """The model of ``spec`` with self-trained image-encoder weights: the one loader of training (which
    starts from ``visual=None``, the entry's own weights) and prediction (``student.pt`` or
    ``teacher.pt`` of the rule self_train)."""
    clip = load_clip(spec, device=device)
    if visual is not None:
        import torch

        clip.model.visual.load_state_dict(torch.load(visual, map_location=clip.device))
    return clip


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


def _project_archs() -> set[str]:
    """The architectures :func:`register_model_configs` adds (no open_clip import)."""
    folder = resources.files("s3a") / "model_configs"
    return {Path(f.name).stem for f in folder.iterdir() if f.name.endswith(".json")}


def activation_problem(spec: ModelSpec) -> str | None:
    """Why ``spec`` cannot be built safely, or None: a local checkpoint file of an architecture whose
    pretrained weights differ in activation (an ``openai`` tag, trained with QuickGELU, beside GELU
    ones) with ``quick_gelu`` unset. A state dict does not say which activation it was trained with
    (QuickGELU has no parameters) and a wrong one loads silently, so the entry must state it.

    Cheap where no question arises: open_clip (and torch) are imported only for a local file of an
    open_clip architecture with ``quick_gelu`` unset, so the workflow can check every model entry
    before any job.
    """
    if spec.quick_gelu is not None or not spec.is_local_file:
        return None
    if spec.arch.startswith(("local-dir:", "hf-hub:")) or spec.arch in _project_archs():
        return None
    import open_clip

    if bool((open_clip.get_model_config(spec.arch) or {}).get("quick_gelu", False)):
        return None  # a -quickgelu architecture: always QuickGELU
    tags = open_clip.list_pretrained_tags_by_model(spec.arch)
    if "openai" not in tags:
        return None
    quick = [t for t in tags if (open_clip.get_pretrained_cfg(spec.arch, t) or {}).get("quick_gelu")]
    gelu = [t for t in tags if t not in quick]
    return (
        f"model {spec.arch} with the local file pretrained={spec.pretrained!r}: set quick_gelu in the "
        f"model entry, because a checkpoint file does not say which activation its weights were "
        f"trained with and the wrong one loads without error: `quick_gelu: true` if the file holds "
        f"OpenAI's weights or others trained with QuickGELU (open_clip tags {', '.join(quick)}), "
        f"`quick_gelu: false` if they were trained with GELU (tags {', '.join(gelu) or 'none'}) "
        f"or are random"
    )


def build_config(spec: ModelSpec) -> BuildConfig:
    """The activation and preprocessing ``spec``'s weights need, from open_clip's pretrained table.

    No download: ``open_clip.get_pretrained_cfg(arch, tag)`` is a table lookup.

    Raises:
        ModelError: ``spec.quick_gelu`` contradicts the tag, is unset for a local file that needs it
            (:func:`activation_problem`), or the architecture is a ``-quickgelu`` one while the
            weights were trained with GELU (open_clip can force QuickGELU, not GELU).
    """
    import open_clip

    register_model_configs()
    _check_spec(spec)
    if spec.arch.startswith(("local-dir:", "hf-hub:")):  # the folder's own config decides
        return BuildConfig(quick_gelu=bool(spec.quick_gelu))
    arch_quick = bool((open_clip.get_model_config(spec.arch) or {}).get("quick_gelu", False))
    tag: dict[str, Any] = {}
    if spec.pretrained and not spec.is_local_file:
        tag = dict(open_clip.get_pretrained_cfg(spec.arch, spec.pretrained) or {})
    if tag:
        quick = bool(tag.get("quick_gelu", False))
        if spec.quick_gelu is not None and bool(spec.quick_gelu) != quick:
            raise ModelError(
                f"model {spec.arch} with pretrained={spec.pretrained!r}: quick_gelu is set to "
                f"{spec.quick_gelu}, but these weights were trained with "
                f"{'QuickGELU' if quick else 'GELU'}; remove quick_gelu from the model entry"
            )
    else:
        problem = activation_problem(spec)
        if problem:
            raise ModelError(problem)
        quick = arch_quick if spec.quick_gelu is None else bool(spec.quick_gelu)
    if arch_quick and not quick:
        plain = spec.arch.removesuffix("-quickgelu")
        raise ModelError(
            f"model {spec.arch} always uses QuickGELU, but pretrained={spec.pretrained!r} needs GELU; "
            f"use the architecture {plain!r} instead"
        )
    mean, std = tag.get("mean"), tag.get("std")
    return BuildConfig(
        quick_gelu=quick,
        mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None,
        interpolation=tag.get("interpolation"),
        resize_mode=tag.get("resize_mode"),
    )


def uses_quick_gelu(model: torch.nn.Module) -> bool:
    """Whether the model's transformer blocks use QuickGELU (as the OpenAI weights need)."""
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in model.modules())


def preprocess_config(model: torch.nn.Module) -> dict[str, Any]:
    """``size`` (int), ``mean``, ``std``, ``interpolation`` of an open_clip model's preprocessing."""
    visual = getattr(model, "visual", model)
    cfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
    if "mean" not in cfg or "std" not in cfg:
        raise ModelError(f"{type(model).__name__} carries no open_clip preprocessing configuration")
    size = cfg.get("size", getattr(visual, "image_size", None))
    return {
        "size": int(size if isinstance(size, int) else min(size)),
        "mean": tuple(float(v) for v in cfg["mean"]),
        "std": tuple(float(v) for v in cfg["std"]),
        "interpolation": str(cfg.get("interpolation") or "bicubic"),
    }


def _verify(model: torch.nn.Module, spec: ModelSpec, build: BuildConfig) -> None:
    """The built model has the activation and the normalisation the weights need."""
    if spec.arch.startswith(("local-dir:", "hf-hub:")):
        return
    if uses_quick_gelu(model) != build.quick_gelu:
        raise ModelError(
            f"model {spec.arch} (pretrained={spec.pretrained!r}) was built with "
            f"{'QuickGELU' if uses_quick_gelu(model) else 'GELU'}, but its weights need "
            f"{'QuickGELU' if build.quick_gelu else 'GELU'}"
        )
    cfg = preprocess_config(model)
    for key in ("mean", "std"):
        want = getattr(build, key)
        if want is not None and not all(abs(a - b) < 1e-9 for a, b in zip(cfg[key], want, strict=True)):
            raise ModelError(
                f"model {spec.arch} (pretrained={spec.pretrained!r}): normalisation {key} {cfg[key]} "
                f"differs from the weights' {want}"
            )


def load_clip(
    spec: ModelSpec, device: str | torch.device | None = None, load_weights: bool = True
) -> LoadedClip:
    """Create the model that matches ``spec``'s weights (:func:`build_config`), load them, and return
    it in eval mode on ``device``.

    Args:
        load_weights: ``False`` builds the same architecture and preprocessing without reading or
            downloading any weights (random initialisation; ``device="meta"`` builds no tensors), to
            inspect what a model entry would run.

    Raises:
        ModelError: unknown architecture or tag, a tag/activation mismatch that cannot be resolved,
            missing checkpoint file, or a failed download.
    """
    import open_clip

    build = build_config(spec)
    dev = pick_device(device)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.arch,
            pretrained=(spec.pretrained or None) if load_weights else None,
            cache_dir=spec.cache_dir,
            device=dev,
            force_quick_gelu=build.quick_gelu,
            image_mean=build.mean,
            image_std=build.std,
            image_interpolation=build.interpolation,
            image_resize_mode=build.resize_mode,
        )
    except (OSError, RuntimeError) as exc:
        raise ModelError(
            f"model {spec.arch} with pretrained={spec.pretrained!r} could not be loaded: {exc}. "
            "If the weights must be downloaded, run once on a machine with internet access "
            "(they are cached) or point `pretrained` at a local checkpoint file."
        ) from exc
    _verify(model, spec, build)
    model.eval()
    tokenizer = open_clip.get_tokenizer(spec.arch)
    log.info(
        "loaded %s (pretrained=%s, %s) on %s",
        spec.arch,
        spec.pretrained,
        "QuickGELU" if build.quick_gelu else "GELU",
        dev,
    )
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
