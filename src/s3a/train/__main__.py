"""Self-train the CLIP image encoder on one dataset: ``python -m s3a.train``.

One GPU (or the CPU)::

    python -m s3a.train --manifest results/sdogs/manifest.parquet \\
        --vocabulary results/vocabulary/vocabulary.parquet \\
        --classifier results/vocabulary/vit_b16/classifier.parquet \\
        --structural-labels results/sdogs/vit_b16/discover/structural_labels.parquet \\
        --student results/sdogs/vit_b16/train/student.pt --teacher results/sdogs/vit_b16/train/teacher.pt \\
        --history results/sdogs/vit_b16/train/history.parquet \\
        --test-epochs results/sdogs/vit_b16/train/test_epochs.parquet \\
        --state resources/train/sdogs/vit_b16/state.pt \\
        --model '{"arch": "ViT-B-16", "pretrained": "openai"}' --params '{"epochs": 30}'

Several GPUs of one node (torchrun starts one process per GPU; ``batch_size`` is the global batch)::

    torchrun --standalone --nproc_per_node=4 -m s3a.train <the same arguments>

Several nodes under Slurm (one task per GPU; ranks come from Slurm's variables)::

    srun --nodes=2 --ntasks-per-node=4 --gpus-per-task=1 python -m s3a.train <the same arguments>

The Snakemake rule ``self_train`` runs the torchrun form with ``--nproc_per_node`` = the rule's GPUs
and its declared outputs as ``--student``, ``--teacher``, ``--history`` and ``--test-epochs``.
A run that is killed resumes from its last finished epoch when started again with the same arguments.
On SIGTERM or SIGUSR1 (``train.checkpoint_signals``: Slurm's time limit, preemption, scancel, or an
early ``sbatch --signal=USR1@300``) it saves its state after the current step and exits with status
75; started again, it goes on from that step and ends with the same weights.
Under torchrun a worker dies with torchrun (:func:`s3a.jobguard.die_with_parent`: SIGTERM, so it
saves its step first), and a second trainer on the same ``--state`` stops at once with one line
(:func:`s3a.jobguard.hold_state_lock`). A dataset with fewer training images than ``batch_size`` (a
small photo folder) trains with a batch of all its images (:func:`fit_batch`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from s3a.jobguard import StateLockedError, die_with_parent, hold_state_lock
from s3a.logs import log_to
from s3a.models import ModelSpec
from s3a.train.loop import TrainParams, TrainPaths, train
from s3a.train.preempt import EXIT_PREEMPTED, Preempted

#: the output files of a run (the declared outputs of the rule self_train)
OUTPUTS = {
    "student": "the student's image-encoder weights (.pt)",
    "teacher": "the teacher's image-encoder weights (.pt)",
    "history": "one row per epoch (.parquet)",
    "test-epochs": "the test predictions of every evaluated epoch (.parquet)",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m s3a.train", description=__doc__.split("\n")[0])
    for name in ("manifest", "vocabulary", "classifier", "structural-labels"):
        parser.add_argument(f"--{name}", required=True, help="input file")
    for name, what in OUTPUTS.items():
        parser.add_argument(f"--{name}", required=True, help=f"output: {what}")
    parser.add_argument("--state", required=True, help="resume state (kept across failed runs)")
    parser.add_argument("--model", required=True, help="model entry as JSON: arch, pretrained, cache_dir")
    parser.add_argument("--params", default="{}", help="TrainParams fields as JSON (others: defaults)")
    parser.add_argument(
        "--device", default="auto", help="cpu forces the CPU; auto = cuda:<local rank> when present"
    )
    parser.add_argument("--log", default=None, help="log file (rank 0 writes it)")
    return parser.parse_args(argv)


def fit_batch(params: TrainParams, n_images: int, world_size: int = 1) -> TrainParams:
    """``params`` with ``batch_size`` lowered to the largest multiple of ``world_size`` that is at most
    ``n_images`` when the images do not fill one batch (a folder of 10 photos trains with a batch of 10).

    Raises:
        ValueError: fewer images than processes.
    """
    if n_images >= params.batch_size:
        return params
    batch = n_images // world_size * world_size
    if batch < 1:
        raise ValueError(f"{n_images} images to train on: fewer than the {world_size} training processes")
    logging.getLogger("s3a.train").warning(
        "%d images to train on, fewer than train.batch_size %d: training with a batch of %d",
        n_images,
        params.batch_size,
        batch,
    )
    return params.model_copy(update={"batch_size": batch})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    die_with_parent()  # under torchrun: this worker goes when torchrun goes
    try:
        return _run(args)
    except StateLockedError as exc:
        print(f"python -m s3a.train: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    # configuration errors surface here, before a model or a GPU is touched
    params = TrainParams(**json.loads(args.params))
    spec = ModelSpec(**json.loads(args.model))
    paths = TrainPaths(
        manifest=args.manifest,
        vocabulary=args.vocabulary,
        classifier=args.classifier,
        structural_labels=args.structural_labels,
        student=args.student,
        teacher=args.teacher,
        history=args.history,
        test_epochs=args.test_epochs,
        state=args.state,
    )
    paths.check()
    log_file = args.log if os.environ.get("RANK", "0") == "0" else None
    with hold_state_lock(args.state), log_to(log_file) as log:  # one trainer per state
        import pyarrow.parquet as pq

        n_images = pq.ParquetFile(paths.structural_labels).metadata.num_rows
        params = fit_batch(params, n_images, int(os.environ.get("WORLD_SIZE", "1")))
        try:
            train(paths, params, spec, device=None if args.device == "auto" else args.device)
        except Preempted as stopped:
            log.warning("%s", stopped)
            return EXIT_PREEMPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
