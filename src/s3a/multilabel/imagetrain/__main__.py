"""Train a multi-label image learner (``finetune`` or ``mldecoder``): ``python -m s3a.multilabel.imagetrain``.

One GPU (or the CPU), several GPUs of one node (torchrun starts one process per GPU; ``batch_size``
is the global batch), or several nodes under Slurm (``srun``, one task per GPU), exactly as
``python -m s3a.train``::

    python -m torch.distributed.run --standalone --nproc_per_node=4 -m s3a.multilabel.imagetrain \\
        --learner finetune --manifest results/voc2012/manifest.parquet \\
        --label-classifier results/voc2012/vit_b16/ml/label_classifier.parquet \\
        --pseudo results/voc2012/vit_b16/ml/pseudo/train.parquet \\
        --labels results/voc2012/labels.parquet --label-set results/voc2012/label_set.parquet \\
        --model '{"arch": "ViT-B-16", "pretrained": "openai"}' --params '{"finetune": {"epochs": 30}, ...}' \\
        --pseudo-params '{"zeta": 0.0}' --device auto \\
        --out-model results/voc2012/vit_b16/ml/finetune/model.pt \\
        --out-history results/voc2012/vit_b16/ml/finetune/history.parquet \\
        --out-labels results/voc2012/vit_b16/ml/finetune/labels_refined.parquet \\
        --state resources/ml_train/voc2012/vit_b16/finetune/state.pt

``--params`` is the ``multilabel.train`` block as in the config (shared keys and one block per learner;
:func:`s3a.multilabel.learners.image_train_config`), ``--learner`` the learner it trains,
``--supervision`` (the ``mldecoder`` learner's, e.g. a dataset's own) overrides the block's. Targets:
with ``supervision: pseudo`` the train images are those of the ``--pseudo`` table (the train split's
CDUL scores, re-aggregated under ``--pseudo-params``) and ``--labels`` only feeds the ``gt_label_map``
diagnostic; with ``gt_seen`` the train images with a seen label
(:func:`s3a.multilabel.decoder.zsl.zsl_split`) and their seen-label ground truth.
``labels_refined.parquet`` is ``image_id, y`` (``fixed_size_list<float32>`` over the training label set:
all labels, or the seen ones in ``label_index`` order for ``gt_seen``). A killed run resumes from its
last finished epoch when started again with the same arguments (``--state``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from s3a.io import read_embeddings, read_table, write_table
from s3a.jobguard import StateLockedError, die_with_parent, hold_state_lock
from s3a.logs import log_to
from s3a.models import ModelSpec
from s3a.multilabel.aggregate import PseudoParams, pseudo_targets
from s3a.multilabel.data.tables import label_matrix, labels_table
from s3a.multilabel.decoder.zsl import gt_targets, zsl_split
from s3a.multilabel.imagetrain.network import LEARNERS, ImageTrainParams, save_model
from s3a.multilabel.learners import image_train_config
from s3a.train import distributed

__all__ = ["TrainInputs", "load_inputs", "parse_args", "main"]


@dataclass(frozen=True)
class TrainInputs:
    """What the loop trains on: ``image_ids`` and ``paths`` ``(N,)``, ``targets`` ``(N, C)``, the
    label ``text`` ``(C, D)`` and the optional ``gt`` ``(N, C)`` bool diagnostic."""

    image_ids: np.ndarray
    paths: list[str]
    targets: np.ndarray
    text: np.ndarray
    gt: np.ndarray | None


def _need(args: argparse.Namespace, supervision: str, *names: str) -> None:
    for name in names:
        value = getattr(args, name.replace("-", "_"))
        if value is None:
            raise ValueError(f"--{name} is required with supervision {supervision}")
        if not Path(value).is_file():
            raise FileNotFoundError(f"multi-label training input --{name} not found: {value}")


def load_inputs(args: argparse.Namespace, params: ImageTrainParams, pseudo: PseudoParams) -> TrainInputs:
    """Read the tables with the library readers and build the training targets (module docstring).

    Raises:
        FileNotFoundError / ValueError: a missing input, or tables that disagree (named).
    """
    need = params.supervision
    _need(args, need, "manifest", "label-classifier")
    manifest = read_table(args.manifest, columns=["image_id", "path", "split"])
    label_ids, w = read_embeddings(args.label_classifier, id_column="label_index")
    order = np.argsort(label_ids)
    if not np.array_equal(label_ids[order], np.arange(len(label_ids))):
        raise ValueError(f"{args.label_classifier}: label_index must be 0..C-1")
    w = w[order]
    if params.supervision == "pseudo":
        _need(args, need, "pseudo")
        table = pq.read_table(args.pseudo)
        ids = table.column("image_id").to_numpy().astype(np.int64)
        targets = pseudo_targets(table, ids, pseudo)
        text = w
        gt = None
        if args.labels is not None:
            _need(args, need, "labels")
            gt = label_matrix(read_table(args.labels), ids, len(w))[0]
    else:
        _need(args, need, "labels", "label-set")
        labels, label_set = read_table(args.labels), read_table(args.label_set)
        split = zsl_split(read_table(args.manifest), labels, label_set)
        ids, text, gt = split.train_ids, w[split.seen], None
        targets = gt_targets(labels, ids, split.seen, len(w))
    if targets.shape[1] != len(text):
        raise ValueError(
            f"{targets.shape[1]} labels in the targets but {len(text)} in {args.label_classifier}"
        )
    rows = manifest.set_index("image_id").reindex(ids)
    missing = rows["path"].isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} training images are not in {args.manifest}, "
            f"e.g. {ids[missing][:5].tolist()}"
        )
    if (rows["split"] != "train").any():
        raise ValueError(f"the training targets name images outside the train split of {args.manifest}")
    return TrainInputs(ids, rows["path"].tolist(), targets, text, gt)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m s3a.multilabel.imagetrain", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--learner", choices=LEARNERS, required=True, help="the learner to train")
    parser.add_argument(
        "--supervision", choices=("pseudo", "gt_seen"), default=None, help="overrides --params' (mldecoder)"
    )
    for name in ("manifest", "label-classifier", "model", "out-model", "out-history", "out-labels", "state"):
        parser.add_argument(f"--{name}", required=True)
    for name in ("pseudo", "labels", "label-set"):
        parser.add_argument(f"--{name}", default=None)
    parser.add_argument("--params", default="{}", help="the multilabel.train block as JSON")
    parser.add_argument("--pseudo-params", default="{}", help="the multilabel.pseudo slice as JSON")
    parser.add_argument(
        "--device", default="auto", help="cpu forces the CPU; auto = cuda:<local rank> when present"
    )
    parser.add_argument("--log", default=None, help="log file (rank 0 writes it)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    die_with_parent()  # under torchrun: this worker goes when torchrun goes (s3a.jobguard)
    try:
        return _run(args)
    except StateLockedError as exc:  # s3a.jobguard.hold_state_lock: one trainer per state
        print(f"python -m s3a.multilabel.imagetrain: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    # configuration errors surface here, before a model or a GPU is touched
    config = json.loads(args.params)
    if args.supervision is not None and args.learner == "mldecoder":
        config["supervision"] = args.supervision
    params = ImageTrainParams.from_config(image_train_config(config, args.learner))
    pseudo = PseudoParams(**json.loads(args.pseudo_params))
    spec = ModelSpec(**json.loads(args.model))
    inputs = load_inputs(args, params, pseudo)
    log_file = args.log if os.environ.get("RANK", "0") == "0" else None
    from s3a.multilabel.imagetrain.loop import train_images
    from s3a.train.preempt import EXIT_PREEMPTED, Preempted

    with hold_state_lock(args.state), log_to(log_file) as log:
        env = distributed.setup(None if args.device == "auto" else args.device)
        try:
            try:
                result = train_images(
                    inputs.paths, inputs.targets, inputs.text, params, spec, env, args.state, inputs.gt
                )
            except Preempted as stopped:  # Slurm's time limit or preemption: retried from the step
                log.warning("%s", stopped)
                return EXIT_PREEMPTED
            if env.is_main:
                save_model(result.net, args.out_model, params)
                write_table(result.history, args.out_history)
                write_table(labels_table(inputs.image_ids, result.labels), args.out_labels)
            distributed.barrier()
        finally:
            distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
