"""The resolved ``multilabel.train`` config slice -> the learners' parameter objects.

The config groups the settings by learner (the models of :mod:`s3a.config.multilabel`)::

    train:
      learners: [linear]           # any of linear, finetune, mldecoder
      supervision: pseudo          # of mldecoder: pseudo | gt_seen (the others: pseudo)
      label_update: {...}          # LabelUpdateParams, shared
      asl: {...}                   # AslParams, shared
      seed: 0
      linear:    {epochs, batch_size, lr, weight_decay, optimizer, net_loss, init_scale, tiles}
      finetune:  {epochs, batch_size, lr, weight_decay, layer_decay, net_loss, init_scale, augment,
                  num_workers, label_every}
      mldecoder: {embed_dim, heads, ff_dim, dropout, query_chunk, clip_loss_weight, cls_loss_weight,
                  backbone, backbone_lr, epochs, batch_size, lr, weight_decay, layer_decay, augment,
                  num_workers}

while the library's dataclasses are flat per learner: :class:`~s3a.multilabel.cdul.linear.LinearParams`
(+ :class:`~s3a.multilabel.cdul.align.LabelUpdateParams`),
:class:`~s3a.multilabel.imagetrain.network.ImageTrainParams`
(the image learners; :meth:`~s3a.multilabel.imagetrain.network.ImageTrainParams.from_config` reads the flat
dict of :func:`image_train_config`) and, for the decoder head on cached patch tokens,
:class:`~s3a.multilabel.decoder.train.HeadTrainParams`, :class:`~s3a.multilabel.decoder.head.MLDecoderParams`
and :class:`~s3a.multilabel.losses.AslParams`.

A key missing from the slice takes the library default of the learner it belongs to (the
``mldecoder`` preset of epochs, batch size, lr and weight decay is :class:`HeadTrainParams`'s);
an unknown learner or key is a ``ValueError`` naming it. The rules' adapters read the config here
(:func:`linear_settings`, :func:`head_params`, :func:`image_train_config`) and hand typed parameters
to CDUL and the decoder, which never read the config themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from s3a.config.multilabel import LEARNERS as ALL_LEARNERS
from s3a.multilabel.cdul.align import LabelUpdateParams
from s3a.multilabel.cdul.linear import LinearParams
from s3a.multilabel.decoder.head import MLDecoderParams
from s3a.multilabel.decoder.train import HeadTrainParams
from s3a.multilabel.imagetrain.network import BACKBONE_KEYS, ImageTrainParams
from s3a.multilabel.losses import AslParams

__all__ = [
    "ALL_LEARNERS",
    "TRAIN_KEYS",
    "LEARNER_KEYS",
    "learner_params",
    "linear_uses_tiles",
    "image_train_config",
    "head_params",
]

#: the shared keys of ``multilabel.train`` besides the per-learner blocks
TRAIN_KEYS = ("learners", "supervision", "label_update", "asl", "seed", "checkpoint_signals")
_DECODER_ARCH = tuple(f.name for f in dataclasses.fields(MLDecoderParams))
_HEAD_KEYS = ("epochs", "batch_size", "lr", "weight_decay")
#: the keys of each learner's block
LEARNER_KEYS: dict[str, tuple[str, ...]] = {
    "linear": (
        "epochs", "batch_size", "lr", "weight_decay", "optimizer", "net_loss", "init_scale", "tiles",
    ),
    "finetune": (
        "epochs", "batch_size", "lr", "weight_decay", "layer_decay", "net_loss", "init_scale",
        "augment", "num_workers", "label_every",
    ),
    "mldecoder": _DECODER_ARCH + BACKBONE_KEYS + _HEAD_KEYS + ("layer_decay", "augment", "num_workers"),
}  # fmt: skip


def _block(train: Mapping[str, Any], learner: str) -> dict[str, Any]:
    """The learner's block of ``train`` after checking the learner and every key."""
    if learner not in ALL_LEARNERS:
        raise ValueError(f"unknown multi-label learner {learner!r}; expected one of {ALL_LEARNERS}")
    unknown = sorted(set(train) - set(TRAIN_KEYS) - set(ALL_LEARNERS))
    if unknown:
        raise ValueError(
            f"unknown multilabel.train keys {unknown}; known: {sorted(TRAIN_KEYS + ALL_LEARNERS)}"
        )
    bad = [name for name in train.get("learners", ()) if name not in ALL_LEARNERS]
    if bad:
        raise ValueError(f"multilabel.train.learners: unknown {bad}; expected any of {ALL_LEARNERS}")
    block = dict(train.get(learner) or {})
    unknown = sorted(set(block) - set(LEARNER_KEYS[learner]))
    if unknown:
        raise ValueError(
            f"unknown multilabel.train.{learner} keys {unknown}; known: {sorted(LEARNER_KEYS[learner])}"
        )
    return block


def _shared(train: Mapping[str, Any], learner: str) -> dict[str, Any]:
    """The shared keys that are present: label_update, asl, seed (nested as dicts), for the image
    learners checkpoint_signals and, for ``mldecoder`` only, supervision (linear and finetune always
    learn from the pseudo-labels)."""
    keys = {"mldecoder": ("supervision", "seed"), "linear": ("seed",)}.get(learner, ("seed",))
    if learner != "linear":  # the image learners stop on a signal (s3a.train.preempt)
        keys = (*keys, "checkpoint_signals")
    out = {k: train[k] for k in keys if k in train}
    for key in ("label_update", "asl"):
        if train.get(key) is not None:
            out[key] = dict(train[key])
    return out


def learner_params(
    train: Mapping[str, Any], learner: str
) -> tuple[LinearParams, LabelUpdateParams] | ImageTrainParams:
    """The library's parameters of ``learner`` from the resolved ``multilabel.train`` slice.

    Returns:
        ``linear``: ``(LinearParams, LabelUpdateParams)`` (``asl`` and ``seed`` are the shared keys;
        ``linear.tiles`` is read by :func:`linear_uses_tiles`); ``finetune`` / ``mldecoder``: the
        :class:`ImageTrainParams` of :func:`image_train_config`.

    Raises:
        ValueError: an unknown learner or key, or invalid values. ``supervision`` is the
            ``mldecoder`` learner's; the others always learn from the pseudo-labels.
    """
    if learner != "linear":
        return ImageTrainParams.from_config(image_train_config(train, learner))
    block = _block(train, learner)
    block.pop("tiles", None)
    shared = _shared(train, learner)
    update = LabelUpdateParams(**shared.get("label_update", {}))
    extra = {k: shared[k] for k in ("asl", "seed") if k in shared}
    return LinearParams(**block, **extra), update


def linear_uses_tiles(train: Mapping[str, Any]) -> bool:
    """``multilabel.train.linear.tiles``: features ``[z, unit(max_j z_j)]`` (True) or ``z`` (False)."""
    return bool(_block(train, "linear").get("tiles", False))


def linear_settings(train: Mapping[str, Any]) -> tuple[LinearParams, LabelUpdateParams, bool]:
    """``(LinearParams, LabelUpdateParams, tiles)`` of the ``linear`` learner: the arguments of
    :func:`s3a.multilabel.cdul.linear.train_linear_step` (rule ``train_linear``)."""
    params, update = learner_params(train, "linear")
    return params, update, linear_uses_tiles(train)


def image_train_config(train: Mapping[str, Any], learner: str) -> dict[str, Any]:
    """The flat dict :meth:`ImageTrainParams.from_config` accepts (the ``--params`` JSON of
    ``python -m s3a.multilabel.imagetrain``) for ``finetune`` or ``mldecoder``.

    ``finetune``: its block's keys at the top level and ``label_every`` as ``label_update.every``.
    ``mldecoder``: the architecture and backbone keys in the ``mldecoder`` sub-dict, the rest at
    the top level (missing epochs / batch_size / lr / weight_decay take :class:`HeadTrainParams`'
    defaults, the mldecoder preset). Both carry ``learner`` and the shared supervision,
    label_update, asl and seed. JSON-serialisable.
    """
    if learner == "linear":
        raise ValueError("image_train_config is for the image learners finetune and mldecoder, not linear")
    block = _block(train, learner)
    out: dict[str, Any] = {"learner": learner, **_shared(train, learner)}
    if learner == "finetune":
        every = block.pop("label_every", None)
        if every is not None:
            out["label_update"] = {**out.get("label_update", {}), "every": every}
        out.update(block)
        return out
    defaults = HeadTrainParams()
    out.update({k: getattr(defaults, k) for k in _HEAD_KEYS})
    out["mldecoder"] = {k: block.pop(k) for k in _DECODER_ARCH + BACKBONE_KEYS if k in block}
    out.update(block)
    return out


def head_params(
    train: Mapping[str, Any], device: str = "cpu"
) -> tuple[HeadTrainParams, MLDecoderParams, AslParams]:
    """``(HeadTrainParams, MLDecoderParams, AslParams)`` of the ``mldecoder`` head trained on cached
    patch tokens (:func:`s3a.multilabel.decoder.train.train_head`): the block's epochs, batch_size, lr,
    weight_decay and the shared seed; its architecture keys; the shared ``asl``. The image-only
    keys (backbone, backbone_lr, layer_decay, augment, num_workers) are not used on this path."""
    block = _block(train, "mldecoder")
    shared = _shared(train, "mldecoder")
    head = {k: block[k] for k in _HEAD_KEYS if k in block}
    if "seed" in shared:
        head["seed"] = shared["seed"]
    return (
        HeadTrainParams(**head, device=device),
        MLDecoderParams(**{k: block[k] for k in _DECODER_ARCH if k in block}),
        AslParams(**shared.get("asl", {})),
    )
