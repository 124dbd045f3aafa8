"""Image learners of the multi-label mode: a CLIP visual tower with a label head, trained on images.

One network serves both learners that train on images rather than on cached features:

* ``finetune`` (spec 6, CDUL): the visual tower's global embedding, L2-normalised, through a linear
  head over the label set that starts where the ``linear`` learner starts (``s0 · W``, bias
  ``−s0 · q90`` of each label's cosines over the train images;
  :func:`s3a.multilabel.cdul.linear.init_linear_head`).
  The backbone is always fine-tuned.
* ``mldecoder`` (spec 7, CLIP-Decoder): the tower's patch tokens in CLIP space
  (:func:`s3a.multilabel.decoder.head.patch_tokens`) through a
  :class:`~s3a.multilabel.decoder.head.CLIPDecoderHead`
  whose queries are the label text embeddings ``W``; the backbone is ``frozen`` (default) or
  fine-tuned (``mldecoder.backbone: finetune``) with layer-wise lr decay.

Optimisation: AdamW; the backbone's parameter groups come from :func:`s3a.train.optim.param_groups`
(layer ``l`` of ``L`` blocks gets ``lr_scale = layer_decay^(L+1−l)``: ``ln_post``/``proj`` scale 1,
the deepest block ``layer_decay``, the embeddings ``layer_decay^(L+1)``), the head one group with
and one without weight decay. Base lrs: ``finetune`` — ``lr`` for the head and the backbone's top;
``mldecoder`` — ``lr`` for the head, ``backbone_lr`` for the backbone's top. Each step multiplies
every base lr by a cosine from 1 to 0 over the run (:func:`s3a.train.optim.cosine_lr`, no warm-up).

The head runs in fp32 with autocast off (its logits decide labels); the tower under bf16 autocast on
CUDA. Training itself is :mod:`s3a.multilabel.imagetrain.loop`; the command line
``python -m s3a.multilabel.imagetrain``.

The rule ``predict_images`` is :func:`predict_images` (on :func:`predict_finetuned`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from s3a.io import atomic_path
from s3a.multilabel.cdul.align import LabelUpdateParams
from s3a.multilabel.cdul.linear import LinearHead
from s3a.multilabel.data.tables import predictions_table
from s3a.multilabel.decoder.head import CLIPDecoderHead, MLDecoderParams, patch_tokens
from s3a.multilabel.losses import NET_LOSSES, AslParams, alignment_loss, asymmetric_loss, network_loss
from s3a.multilabel.views.tables import split_rows
from s3a.train.optim import param_groups

__all__ = [
    "LEARNERS",
    "BACKBONES",
    "AUGMENTS",
    "IGNORED_KEYS",
    "ImageTrainParams",
    "NetOutput",
    "ImageLabelNet",
    "build_net",
    "net_param_groups",
    "image_loss",
    "save_model",
    "load_model",
    "predict_finetuned",
    "predict_images",
]

log = logging.getLogger(__name__)
LEARNERS = ("finetune", "mldecoder")
BACKBONES = ("frozen", "finetune")
AUGMENTS = ("none", "weak", "strong")
#: keys of the shared ``multilabel.train`` slice that only the ``linear`` learner reads
IGNORED_KEYS = ("optimizer", "device")
#: keys of ``multilabel.train.mldecoder`` read here rather than by :class:`MLDecoderParams`
BACKBONE_KEYS = ("backbone", "backbone_lr")


@dataclass(frozen=True)
class ImageTrainParams:
    """Settings of the image learners (config ``multilabel.train``; defaults are spec 6's
    ``finetune`` preset: AdamW lr 1e-5, batch 64, 30 epochs, label updates every 5 epochs).

    Attributes:
        learner: ``finetune`` or ``mldecoder``.
        supervision: ``pseudo`` (CDUL pseudo-labels, latent labels updated) or ``gt_seen``
            (``mldecoder`` only: ground truth of the seen labels, never updated).
        net_loss: ``finetune``: ``bce``, ``asl`` or ``kl_softmax``
            (:func:`~s3a.multilabel.losses.network_loss`);
            ``mldecoder`` always trains ``cls_loss_weight · ASL + clip_loss_weight · L_clip``.
        label_update: the latent-label schedule (``multilabel.train.label_update``).
        asl: asymmetric-loss settings (``multilabel.train.asl``).
        mldecoder: the decoder head (``multilabel.train.mldecoder`` without its backbone keys).
        backbone: ``mldecoder.backbone``: ``frozen`` or ``finetune`` (the ``finetune`` learner always
            fine-tunes).
        backbone_lr: ``mldecoder.backbone_lr``: base lr of the backbone's top with ``mldecoder``.
        epochs, batch_size, lr, weight_decay, seed: as the rest of ``multilabel.train``
            (``batch_size`` is global over all processes and must divide by their number).
        layer_decay: layer-wise lr decay of the backbone.
        init_scale: s0 of the ``finetune`` head's start (the ``linear`` learner's key).
        augment: training view: ``none`` (the model's evaluation transform), ``weak`` (resize +
            random crop) or ``strong`` (RandAugment), from :mod:`s3a.train.augment`.
        num_workers: data-loading workers per process.
        checkpoint_signals: signals on which training saves a mid-epoch state and exits with status
            75 (:mod:`s3a.train.preempt`).
    """

    learner: str = "finetune"
    supervision: str = "pseudo"
    net_loss: str = "bce"
    label_update: LabelUpdateParams = field(default_factory=lambda: LabelUpdateParams(every=5))
    asl: AslParams = field(default_factory=AslParams)
    mldecoder: MLDecoderParams = field(default_factory=MLDecoderParams)
    backbone: str = "frozen"
    backbone_lr: float = 1e-5
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-5
    weight_decay: float = 0.05
    layer_decay: float = 0.65
    init_scale: float = 50.0
    augment: str = "weak"
    num_workers: int = 4
    seed: int = 0
    checkpoint_signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint_signals", tuple(self.checkpoint_signals))  # frozen
        checks = {
            "learner": (self.learner, LEARNERS),
            "supervision": (self.supervision, ("pseudo", "gt_seen")),
            "net_loss": (self.net_loss, NET_LOSSES),
            "mldecoder.backbone": (self.backbone, BACKBONES),
            "augment": (self.augment, AUGMENTS),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"multilabel.train.{key} must be one of {allowed}, got {value!r}")
        if self.supervision == "gt_seen" and self.learner != "mldecoder":
            raise ValueError("supervision gt_seen needs learner mldecoder (its head scores unseen labels)")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or not self.backbone_lr > 0:
            raise ValueError("multilabel.train needs epochs >= 1, batch_size >= 1, lr > 0, backbone_lr > 0")
        if self.weight_decay < 0 or not 0 < self.layer_decay <= 1 or self.num_workers < 0:
            raise ValueError(
                "multilabel.train needs weight_decay >= 0, 0 < layer_decay <= 1, num_workers >= 0"
            )

    @property
    def trains_backbone(self) -> bool:
        return self.learner == "finetune" or self.backbone == "finetune"

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> ImageTrainParams:
        """From the ``multilabel.train`` slice (nested blocks as dicts); keys of the ``linear``
        learner (:data:`IGNORED_KEYS`) are skipped, an unknown key is an error naming it."""
        top = {k: v for k, v in dict(config).items() if k not in IGNORED_KEYS}
        names = {f.name for f in dataclasses.fields(cls)} - {"backbone", "backbone_lr"}
        unknown = sorted(set(top) - names)
        if unknown:
            raise ValueError(
                f"unknown multilabel.train keys {unknown}; known: {sorted(names | set(IGNORED_KEYS))}"
            )
        if "label_update" in top:
            top["label_update"] = LabelUpdateParams(**top["label_update"])
        if "asl" in top:
            top["asl"] = AslParams(**top["asl"])
        decoder = dict(top.pop("mldecoder", {}) or {})
        for key in BACKBONE_KEYS:
            if key in decoder:
                top[key] = decoder.pop(key)
        try:
            top["mldecoder"] = MLDecoderParams(**decoder)
        except TypeError as exc:
            raise ValueError(f"multilabel.train.mldecoder: {exc}") from exc
        return cls(**top)


class NetOutput(NamedTuple):
    """What :class:`ImageLabelNet` returns: ``(B, C)`` logits and, for a decoder head in training,
    the alignment term's inputs (pooled memory ``v`` (B, E), projected queries ``q`` (C, E), κ)."""

    logits: torch.Tensor
    v: torch.Tensor | None = None
    q: torch.Tensor | None = None
    kappa: torch.Tensor | None = None


class ImageLabelNet(nn.Module):
    """A CLIP visual tower and a label head (module docstring): ``forward(images (B, 3, S, S))``."""

    def __init__(self, visual: nn.Module, head: nn.Module, text: torch.Tensor | None, train_backbone: bool):
        super().__init__()
        self.visual, self.head, self.train_backbone = visual, head, train_backbone
        self.decoder = isinstance(head, CLIPDecoderHead)
        if self.decoder:
            if text is None:
                raise ValueError("a CLIPDecoderHead needs the label text embeddings")
            self.register_buffer("text", text.float())
        self.visual.requires_grad_(train_backbone)

    def train(self, mode: bool = True) -> ImageLabelNet:
        super().train(mode)
        if not self.train_backbone:
            self.visual.eval()  # a frozen tower keeps its evaluation behaviour
        return self

    def forward(self, images: torch.Tensor, text: torch.Tensor | None = None) -> NetOutput:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.train_backbone):
            feats = patch_tokens(self.visual, images) if self.decoder else self.visual(images)
        with torch.autocast(feats.device.type, enabled=False):
            feats = feats.float()
            if not self.decoder:
                return NetOutput(self.head(F.normalize(feats, dim=-1)))
            text = self.text if text is None else text.float()
            memory = self.head.memory(feats)
            logits = self.head.decode(memory, self.head.queries(text))
            if not self.training:
                return NetOutput(logits)
            v, q = self.head.align_embeddings(text, memory=memory)
            return NetOutput(logits, v, q, self.head.kappa)


def build_net(visual: nn.Module, text: np.ndarray, params: ImageTrainParams) -> ImageLabelNet:
    """The network of ``params.learner`` on ``visual`` (float32) for the label set ``text`` ``(C, D)``.

    The ``finetune`` head is left at zero here: start it with
    :func:`~s3a.multilabel.cdul.linear.init_linear_head` on the train images' embeddings (or load weights).
    The decoder head is initialised from ``params.seed``.
    """
    visual = visual.float()
    w = torch.tensor(np.asarray(text, dtype=np.float32))
    if params.learner == "finetune":
        dim = int(getattr(visual, "output_dim", w.shape[1]))
        return ImageLabelNet(visual, LinearHead(dim, w.shape[0]), None, True)
    if not hasattr(visual, "output_tokens"):
        raise ValueError(
            f"{type(visual).__name__} gives no patch tokens; the mldecoder learner needs a ViT CLIP model"
        )
    torch.manual_seed(params.seed)
    head = CLIPDecoderHead(int(visual.output_dim), w.shape[1], params.mldecoder)
    return ImageLabelNet(visual, head.to(next(visual.parameters()).device), w, params.trains_backbone)


def net_param_groups(net: ImageLabelNet, params: ImageTrainParams) -> list[dict]:
    """AdamW groups with a ``base_lr`` each (module docstring): the backbone's layer-decay groups
    (when it trains) and the head's (weight decay on matrices only)."""
    groups = []
    if net.train_backbone:
        top = params.backbone_lr if params.learner == "mldecoder" else params.lr
        for group in param_groups(net.visual, params):  # duck-typed: layer_decay, weight_decay
            groups.append({**group, "base_lr": top * group["lr_scale"], "part": "backbone"})
    head = [p for p in net.head.parameters() if p.requires_grad]
    for decay in (True, False):
        chosen = [p for p in head if (p.ndim > 1) == decay]
        if chosen:
            wd = params.weight_decay if decay else 0.0
            groups.append({"params": chosen, "weight_decay": wd, "base_lr": params.lr, "part": "head"})
    for group in groups:
        group["lr"] = group["base_lr"]
    return groups


def image_loss(
    out: NetOutput, target: torch.Tensor, params: ImageTrainParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, p)`` of one batch, a mean over images (so DDP's gradient average is the global
    batch's): the ``finetune`` head's ``net_loss``; the decoder's
    ``(cls_loss_weight · ASL_sum + clip_loss_weight · B · L_clip) / B`` (as ``train_head`` weighs
    them, per image). ``p = σ(logits)`` (softmax for ``kl_softmax``), detached."""
    if out.v is None:
        return network_loss(out.logits, target, params.net_loss, params.asl)
    head = params.mldecoder
    cls = asymmetric_loss(out.logits, target, params.asl) / len(target)
    clip = alignment_loss(out.v, out.q, target, out.kappa)
    return head.cls_loss_weight * cls + head.clip_loss_weight * clip, torch.sigmoid(out.logits.detach())


def save_model(net: ImageLabelNet, path: str | Path, params: ImageTrainParams) -> None:
    """``model.pt``: the learner, the head's weights and shape, the decoder's label text and
    settings, and the tower's weights when it was trained (a frozen tower is the model entry's own)."""
    state = {
        "learner": params.learner,
        "head": net.head.state_dict(),
        "text": net.text.cpu() if net.decoder else None,
        "n_labels": int(net.head.linear.out_features) if not net.decoder else int(len(net.text)),
        "mldecoder": dataclasses.asdict(params.mldecoder),
        "visual": net.visual.state_dict() if net.train_backbone else None,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_model(path: str | Path, visual: nn.Module) -> ImageLabelNet:
    """The network saved by :func:`save_model` on the model entry's ``visual`` tower (eval mode)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("learner") not in LEARNERS:
        raise ValueError(f"{path} is not a model of the finetune or mldecoder learner")
    if state["visual"] is not None:
        visual.load_state_dict(state["visual"])
    visual = visual.float()
    device = next(visual.parameters()).device
    if state["learner"] == "finetune":
        weight = state["head"]["linear.weight"]
        head = LinearHead(weight.shape[1], weight.shape[0])
        net = ImageLabelNet(visual, head, None, False)
    else:
        text = state["text"]
        head = CLIPDecoderHead(int(visual.output_dim), text.shape[1], MLDecoderParams(**state["mldecoder"]))
        net = ImageLabelNet(visual, head, text, False)
    net.head.load_state_dict(state["head"])
    return net.to(device).eval()


def predict_finetuned(
    model_pt_path: str | Path,
    image_paths: Sequence[str],
    model_spec,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    decoder: str = "pil",
    num_workers: int = 4,
    text: np.ndarray | None = None,
    progress: bool = True,
) -> np.ndarray:
    """``(N, C)`` float64 sigmoid scores of ``image_paths`` under a fine-tuned model (``model.pt``
    of the ``finetune`` or ``mldecoder`` learner) on the model entry ``model_spec``.

    Images are read by :func:`s3a.embed.image_batches` (decoder ``decoder``, the model's evaluation
    transform); an unreadable image is logged and its row is NaN. ``text`` ``(C', D)`` scores another
    label set with a decoder head (e.g. all labels for GZSL; default: its training labels).
    Memory: the ``(N, C)`` float64 result (``8 · N · C`` bytes; float32 would tie every logit
    above ~16.6 at 1.0) plus a few batches; cost one forward per image.
    """
    from s3a.embed import EmbedParams, image_batches
    from s3a.models import ModelSpec, load_clip

    spec = model_spec if isinstance(model_spec, ModelSpec) else ModelSpec(**dict(model_spec))
    clip = load_clip(spec, device=device)
    net = load_model(model_pt_path, clip.model.visual)
    if text is not None and not net.decoder:
        raise ValueError("text replaces the label set of a decoder head only (learner mldecoder)")
    w = None if text is None else torch.tensor(np.asarray(text, dtype=np.float32), device=clip.device)
    n_labels = len(w) if w is not None else (len(net.text) if net.decoder else net.head.linear.out_features)
    out = np.full((len(image_paths), n_labels), np.nan, np.float64)
    read = EmbedParams(batch_size=batch_size, num_workers=num_workers, decoder=decoder)
    cuda = clip.device.type == "cuda"
    batches = image_batches(
        image_paths, clip.preprocess, read, clip.device, desc="predict", progress=progress
    )
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        for idx, images, bad in batches:
            for i, why in bad:
                log.warning("skipped unreadable image %s (%s)", image_paths[i], why)
            if images is not None:
                out[idx.numpy()] = torch.sigmoid(net(images, w).logits.double()).cpu().numpy()
    return out


def predict_images(
    model_pt: str | Path,
    manifest: pd.DataFrame,
    split: str,
    model_spec,
    batch_size: int = 256,
    decoder: str = "pil",
    num_workers: int = 4,
    device: str | None = None,
    text: np.ndarray | None = None,
    progress: bool = True,
) -> pa.Table:
    """Rule ``predict_images``: ``image_id, scores`` of a split's images under the ``model.pt`` of
    the ``finetune`` or ``mldecoder`` learner (:func:`s3a.multilabel.imagetrain.network.predict_finetuned`,
    one forward per image). Unreadable images (NaN rows there) are left out and counted in the log.
    """
    pass

    rows = split_rows(manifest, split)
    paths: Sequence[str] = rows["path"].tolist()
    scores = predict_finetuned(
        model_pt, paths, model_spec, batch_size, device, decoder, num_workers, text, progress
    )
    ok = ~np.isnan(scores).any(axis=1)
    log.info("%s: scored %d of %d images", split, int(ok.sum()), len(rows))
    return predictions_table(rows["image_id"].to_numpy(dtype=np.int64)[ok], scores[ok])
