"""Self-training parameters and files (spec 6.4): the config block plus the decoder, and the run's paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from pydantic import model_validator

from s3a.config import DECODERS, Embed, Train

ONLINE_STARTS = get_args(Train.model_fields["online_start"].annotation)


class TrainParams(Train):
    """Self-training hyperparameters: the config block :class:`s3a.config.Train` (spec 6.1-6.4;
    defaults are the official ViT-B/16 ones) and the image decoder of ``embed``.

    Attributes:
        epochs: training epochs.
        batch_size: global batch (over all processes); must divide by the number of processes.
        lr, min_lr: peak and final learning rate per 256 images (scaled by ``batch_size / 256``).
        weight_decay: AdamW weight decay (none on 1-D parameters).
        layer_decay: layer-wise lr decay (embeddings 0 ... blocks ... head L+1).
        ema_decay_init, ema_decay, ema_warmup_iters: EMA decay ramp of the teacher.
        conf_threshold: teacher confidence above which the instance loss applies (tau).
        w_ins, w_str: weights of the instance and structural losses.
        warmup_epochs: epochs trained on the offline structural labels before the online vote.
        online_start: partition the online vote starts from: ``offline_partition`` (official) or
            ``previous_epoch``.
        vote_iters: vote iterations of the online vote.
        max_steps_per_epoch: cap of optimizer steps per epoch (official: 1000).
        eval_every: epochs between evaluations of the student and teacher on the test split (and of
            the teacher on the train split); the last epoch is always evaluated.
        num_workers: data-loading workers per process.
        augment: where the training views are made: ``cpu`` (workers decode and augment,
            :mod:`s3a.train.augment`) or ``gpu`` (workers read bytes and draw the parameters, the
            training device decodes and augments, :mod:`s3a.train.gpu_views`).
        extract_batch_size: images per forward pass when extracting teacher features.
        seed: seeds the sampler, augmentations (per sample, epoch and index) and initial state.
        checkpoint_signals: signals on which the run saves a mid-epoch state and exits with
            :data:`s3a.train.preempt.EXIT_PREEMPTED` (:mod:`s3a.train.preempt`).
        precision: ``bf16`` (the image encoder under bf16 autocast on CUDA) or ``fp32`` (no autocast,
            the official run); see :func:`s3a.train.loop.encoder_autocast`.
        decoder: image decoding of the teacher-feature extraction (``pil`` or ``fast``, see
            :class:`s3a.embed.EmbedParams`); the workflow passes ``embed.decoder``, so offline and
            online features come from the same decoder.
    """

    decoder: Literal[DECODERS] = Embed.model_fields["decoder"].default  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _schedule(self) -> TrainParams:
        if self.min_lr > self.lr:
            raise ValueError(f"train.min_lr ({self.min_lr}) must not exceed train.lr ({self.lr})")
        return self


@dataclass(frozen=True)
class TrainPaths:
    """Files of one training run: inputs, outputs, and the resume state (under ``resources/``).

    Attributes:
        student, teacher: the image encoders' final weights (``state_dict`` of ``model.visual``).
        history: one row per finished epoch (losses, and the test metrics of evaluated epochs).
        test_epochs: per evaluated epoch, the test predictions of student and teacher: image_id,
            epoch, student_vocab_index, teacher_vocab_index (N_test rows per evaluated epoch).
        state: the resume state, written after every epoch; never a declared output of a rule
            (Snakemake deletes those when a job fails).
    """

    manifest: str
    vocabulary: str
    classifier: str
    structural_labels: str
    student: str
    teacher: str
    history: str
    test_epochs: str
    state: str

    def check(self) -> None:
        """Fail before any GPU time when an input is missing."""
        for name in ("manifest", "vocabulary", "classifier", "structural_labels"):
            if not Path(getattr(self, name)).is_file():
                raise FileNotFoundError(f"self-training input {name} not found: {getattr(self, name)}")
