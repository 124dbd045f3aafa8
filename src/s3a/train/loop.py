"""Teacher-student self-training of the CLIP image encoder (spec 6 and 5.6).

The student is the CLIP image encoder followed by the frozen vocabulary classifier ``W``; the
teacher is its EMA. Per iteration, with teacher probabilities ``q = softmax(100 W t(x_weak))`` and
student logits ``s = 100 W f(x_strong)``::

    L = w_ins * CE(s, argmax q)[max q > tau] + w_str * CE(s, y_str)

The image encoder runs under bf16 autocast on CUDA, or in fp32 with ``train.precision: fp32`` (the
official run, :func:`s3a.train.step.encoder_autocast`); the logits over the names are fp32 either way.

From epoch ``warmup_epochs`` on, the structural labels ``y_str`` are recomputed at the start of
every epoch by the vote iterations of spec 5.3 on the teacher's features (spec 5.6).

Every ``eval_every`` epochs (and after the last one) the student and the teacher are evaluated on the
test split of the manifest, as the official code does: ``history.parquet`` carries their test top-1
and cluster accuracy (over the named classes, as the report) per evaluated epoch, and
``test_epochs.parquet`` their test predictions, from which the workflow reports the ``last`` epoch
and the ``best`` one (selected on the test split).

The parameters live in :mod:`s3a.train.params`, the views in :mod:`s3a.train.augment` (made in the
loader workers) and :mod:`s3a.train.gpu_views` (on the device, ``augment: gpu``), the optimisation
(layer decay, cosine schedule, EMA, loss) in :mod:`s3a.train.optim`, one step and one epoch in
:mod:`s3a.train.step`, the resume state in :mod:`s3a.train.state` and the stop on a signal in
:mod:`s3a.train.preempt`.

State is saved after every epoch (``state_path``, outside the declared outputs); a run that was
killed restarts from its last finished epoch and, because every epoch re-seeds its random streams
from (seed, epoch, rank) and every sample's augmentation from (seed, epoch, index), ends with the
same result as an uninterrupted run. On SIGTERM/SIGUSR1 (``checkpoint_signals``) the state is also
saved in the middle of an epoch, after the current step, and the run exits with status 75.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from s3a.classify import zero_shot
from s3a.decode import ahead
from s3a.discover.vote import VoteParams, cluster_vote
from s3a.embed import EmbedParams, image_batches
from s3a.io import atomic_path, read_embeddings, read_table, write_table
from s3a.metrics import evaluate_predictions, gt_vocab_index, named_classes, top1_accuracy
from s3a.models import ModelSpec, load_trained
from s3a.train import distributed
from s3a.train.augment import TwoViews, training_views
from s3a.train.gpu_views import ViewBytes, device_views, view_batches
from s3a.train.optim import param_groups
from s3a.train.params import TrainParams, TrainPaths
from s3a.train.preempt import Preempted, SignalFlag, epoch_loader, random_states, set_random_states
from s3a.train.state import ResumeState, run_fingerprint, seed_everything
from s3a.train.step import EpochRun, encoder_autocast, max_over_ranks, train_epoch

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------
# the run


def vocabulary_top1(
    features: np.ndarray, classifier: np.ndarray, device: torch.device | None = None
) -> np.ndarray:
    """``(N,)`` index of each image's best name over the whole vocabulary (the online vote's top-1).

    Chunked through :func:`s3a.classify.zero_shot`: extra memory about 1.3 GB whatever N is (never the
    ``N x V`` matrix, 103 GB at N = 1.28M, V = 20,071).
    """
    return zero_shot(features, classifier, device=device)[0]


@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    paths: list[str],
    transform,
    params: TrainParams,
    env: distributed.DistEnv,
    skip_unreadable: bool = False,
) -> np.ndarray:
    """Unit-norm features ``(N, D)`` of ``paths`` computed by all processes together.

    Reads images like :func:`s3a.embed.encode_images`, with the decoder ``params.decoder`` (the
    workflow's ``embed.decoder``). The training images all decoded when they were embedded, so a
    failure is an error; with ``skip_unreadable`` (the test split, where ``embed_images`` skipped
    corrupt images too) an unreadable image is logged and its row is all zeros.
    """
    sampler = (
        DistributedSampler(range(len(paths)), env.world_size, env.rank, shuffle=False)
        if env.distributed
        else None
    )
    read = EmbedParams(
        batch_size=params.extract_batch_size, num_workers=params.num_workers, decoder=params.decoder
    )
    model.eval()
    index, rows = [], []
    autocast = encoder_autocast(env.device, params.precision)
    batches = image_batches(
        paths, transform, read, env.device, sampler, desc="teacher features", progress=env.is_main
    )
    with autocast:
        for idx, images, bad in batches:
            if bad and not skip_unreadable:
                raise OSError(f"training images became unreadable: {[(paths[i], why) for i, why in bad][:3]}")
            for i, why in bad:
                log.warning("skipped unreadable image %s (%s)", paths[i], why)
            if images is None:
                continue
            rows.append(F.normalize(model(images).float(), dim=-1))
            index.append(idx)
    if not rows:  # this process read nothing (every image of its shard unreadable)
        dim = int(getattr(model, "output_dim", 0))
        return distributed.gather_rows(torch.zeros(0, dtype=torch.long), torch.zeros(0, dim), len(paths), env)
    return distributed.gather_rows(torch.cat(index), torch.cat(rows), len(paths), env)


@dataclass(frozen=True)
class EvalSplit:
    """The labelled split the student and teacher are evaluated on during training (``test``).

    Attributes:
        image_id, paths: ``(M,)`` images of the split.
        gt_vocab: ``(M,)`` vocabulary index of each image's class name (``-1`` out of vocabulary).
        gt_class: ``(M,)`` the named class (:func:`s3a.metrics.named_classes`) the cluster accuracy
            matches against: classes sharing a vocabulary name are one, as in the report (997 on
            ImageNet-1K).
        gt_names: ``(M,)`` class-name strings.
        names: ``(V,)`` vocabulary names by ``vocab_index``.
    """

    image_id: np.ndarray
    paths: list[str]
    gt_vocab: np.ndarray
    gt_class: np.ndarray
    gt_names: list[str]
    names: list[str]


def evaluate_on_split(
    model: torch.nn.Module,
    split: EvalSplit,
    transform,
    classifier: np.ndarray,
    params: TrainParams,
    env: distributed.DistEnv,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Predict every image of ``split`` over the whole vocabulary and score it (spec 7.1-7.2).

    Cost: one forward pass over the split and the chunked top-1 (memory bounded whatever its size).

    Returns:
        ``(image_id, pred_vocab_index, metrics)`` for the images that decoded; metrics are
        ``top1`` and ``cluster_acc`` in percent (:func:`s3a.metrics.evaluate_predictions`).
    """
    features = extract_features(model, split.paths, transform, params, env, skip_unreadable=True)
    ok = np.linalg.norm(features, axis=1) > 0.5
    pred = vocabulary_top1(features[ok], classifier, env.device)
    gt_names = [name for name, keep in zip(split.gt_names, ok, strict=True) if keep]
    metrics = evaluate_predictions(pred, split.gt_vocab[ok], split.gt_class[ok], split.names, gt_names)
    return split.image_id[ok], pred, {"top1": metrics["top1"], "cluster_acc": metrics["cluster_acc"]}


def _load_inputs(paths: TrainPaths):
    manifest = read_table(paths.manifest)
    structural = read_table(paths.structural_labels)
    rows = structural.merge(manifest[["image_id", "path", "class_name", "wnid"]], on="image_id", how="left")
    if rows.path.isna().any():
        raise ValueError(f"{paths.structural_labels} names images that are not in {paths.manifest}")
    vocabulary = read_table(paths.vocabulary, columns=["vocab_index", "name", "synset_ids"])
    gt = gt_vocab_index(list(rows.wnid), list(rows.class_name), vocabulary)
    _, classifier = read_embeddings(paths.classifier, id_column="vocab_index")
    return rows, gt, classifier, eval_split(manifest, vocabulary)


def eval_split(manifest: pd.DataFrame, vocabulary: pd.DataFrame) -> EvalSplit:
    """The test split of ``manifest`` with its ground truth as the report's
    :func:`s3a.metrics.stage_metrics` takes it (vocabulary index and named class)."""
    test = manifest[manifest.split == "test"]
    gt_vocab = gt_vocab_index(list(test.wnid), list(test.class_name), vocabulary)
    return EvalSplit(
        image_id=test.image_id.to_numpy(),
        paths=list(test.path),
        gt_vocab=gt_vocab,
        gt_class=named_classes(gt_vocab, list(test.class_name)),
        gt_names=list(test.class_name),
        names=vocabulary.sort_values("vocab_index").name.tolist(),
    )


def train(paths: TrainPaths, params: TrainParams, spec: ModelSpec, device: str | None = None) -> pd.DataFrame:
    """Self-train, save student/teacher weights, ``history.parquet`` and ``test_epochs.parquet``
    (per-epoch test predictions) to the output files of ``paths``.

    Returns:
        the history, one row per epoch.
    """
    paths.check()
    env = distributed.setup(device)
    try:
        return _train(paths, params, spec, env)
    finally:
        distributed.teardown()


def training_data(
    image_paths: list[str], preprocess_cfg: dict, params: TrainParams, device: torch.device
) -> tuple[torch.utils.data.Dataset, Callable[[Iterable], Iterable]]:
    """The training images' dataset and what turns its loader into ``(weak, strong, index)`` batches:
    views made in the workers (``augment: cpu``, :class:`TwoViews`; the loader as it is) or on
    ``device`` (``augment: gpu``: :class:`ViewBytes`, then :func:`view_batches`, two batches ahead of
    the training step in a background thread, :func:`s3a.decode.ahead`, when loader workers draw the
    parameters: without workers the draws would reseed the global generators from that thread while
    the step runs, so the views are made in this thread)."""
    if params.augment == "gpu":
        sampler, views = device_views(preprocess_cfg)
        data = ViewBytes(image_paths, sampler, seed=params.seed)
        depth = 2 if params.num_workers > 0 else 0

        def batches(loader: Iterable) -> Iterable:
            made = view_batches(loader, views, data.reader, image_paths, device)
            return ahead(made, device, depth) if depth else made

        return data, batches
    return TwoViews(image_paths, *training_views(preprocess_cfg), seed=params.seed), lambda loader: loader


def _train(paths: TrainPaths, params: TrainParams, spec: ModelSpec, env: distributed.DistEnv) -> pd.DataFrame:
    if params.batch_size % env.world_size:
        raise ValueError(
            f"train.batch_size {params.batch_size} must divide by the {env.world_size} processes"
        )
    rows, gt, classifier_np, test_split = _load_inputs(paths)
    image_paths = list(rows.path)
    offline_labels = rows.vocab_index.to_numpy()
    offline_partition = rows.cluster.to_numpy()
    if len(rows) < params.batch_size:
        raise ValueError(f"{len(rows)} training images are fewer than one batch of {params.batch_size}")

    seed_everything(params.seed, -1, 0)
    clip = load_trained(spec, device=env.device)
    student = clip.model.visual.float()
    teacher = copy.deepcopy(student).requires_grad_(False)
    classifier = torch.from_numpy(np.array(classifier_np)).to(env.device)
    optimizer = torch.optim.AdamW(param_groups(student, params), lr=params.lr, eps=1e-8)
    steps = min(len(rows) // params.batch_size, params.max_steps_per_epoch)
    total = steps * params.epochs

    fingerprint = run_fingerprint(paths, params, spec, env.world_size)
    state = ResumeState.load(paths.state, fingerprint)
    history: list[dict] = []
    test_predictions: list[pd.DataFrame] = []  # per evaluated epoch: image_id, epoch, student/teacher
    labels, partition, start_epoch, step = offline_labels.copy(), offline_partition.copy(), 0, 0
    interruptions: list[dict] = []  # the signals this run stopped on, and where (kept in its state)
    if state is not None:
        interruptions = list(state.interruptions)
        student.load_state_dict(state.student)
        teacher.load_state_dict(state.teacher)
        optimizer.load_state_dict(state.optimizer)
        history, labels, partition = state.history, state.labels, state.partition
        test_predictions = state.test_predictions
        start_epoch, step = state.epoch, state.step
        where = f"step {state.step_in_epoch} of epoch {start_epoch}" if state.step_in_epoch else ""
        log.info("resuming from %s %s", paths.state, where or f"after epoch {start_epoch}")
    model = DistributedDataParallel(student) if env.distributed else student

    data, to_views = training_data(image_paths, clip.preprocess_cfg, params, env.device)
    per_rank = params.batch_size // env.world_size
    stop = SignalFlag(params.checkpoint_signals)

    def save(epoch: int, step: int, labels, partition, **mid) -> None:
        """The resume state (main process): at the end of an epoch, or in it (``mid``)."""
        if env.is_main:
            ResumeState(
                fingerprint=fingerprint, epoch=epoch, step=step, student=student.state_dict(),
                teacher=teacher.state_dict(), optimizer=optimizer.state_dict(), history=history,
                labels=np.asarray(labels), partition=np.asarray(partition),
                test_predictions=test_predictions, interruptions=interruptions, **mid,
            ).save(paths.state)  # fmt: skip

    with stop.installed():  # from here a signal saves the state at the next step or epoch end
        for epoch in range(start_epoch, params.epochs):
            seed_everything(params.seed, epoch, env.rank)
            run = EpochRun(step=step, sums=np.zeros(5))
            if state is not None and state.epoch == epoch and state.step_in_epoch:  # resumed mid-epoch
                previous, teacher_top1 = state.previous_labels, state.teacher_top1
                run.done, run.lr = state.step_in_epoch, state.lr
                run.sums = np.asarray(state.epoch_sums, dtype=np.float64) * (1.0 if env.is_main else 0.0)
                if env.is_main and state.random_states is not None:
                    set_random_states(state.random_states)
            else:
                previous = labels
                teacher_top1 = math.nan
                if epoch >= params.warmup_epochs or epoch % params.eval_every == 0:
                    features = extract_features(teacher, image_paths, clip.preprocess, params, env)
                    top1 = vocabulary_top1(features, classifier_np, env.device)
                    teacher_top1 = 100 * top1_accuracy(top1, gt)
                    if epoch >= params.warmup_epochs:
                        start = offline_partition if params.online_start == "offline_partition" else partition
                        vote = cluster_vote(
                            features, classifier_np, start, VoteParams(n_iter=params.vote_iters), top1=top1
                        )
                        labels, partition = vote.labels, vote.final_partition
            loader = to_views(
                epoch_loader(data, env, epoch, params.seed, per_rank, run.done, params.num_workers, True)
            )
            labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int64))

            def checkpoint(
                run: EpochRun, epoch=epoch, labels=labels, partition=partition, previous=previous,
                top1=teacher_top1,
            ) -> None:  # fmt: skip
                """Save the state after ``run.done`` steps of ``epoch`` and stop (a signal arrived)."""
                sums = distributed.all_reduce_sum(run.sums, env)
                where = {"signal": stop.received, "epoch": epoch, "step_in_epoch": run.done, "step": run.step}
                interruptions.append(where)
                save(
                    epoch, run.step, labels, partition, step_in_epoch=run.done,
                    epoch_sums=[float(v) for v in sums], previous_labels=np.asarray(previous),
                    teacher_top1=float(top1), lr=float(run.lr), random_states=random_states(),
                )  # fmt: skip
                distributed.barrier()
                raise Preempted(stop.received or "a signal", epoch, run.done, str(paths.state))

            stats = train_epoch(
                model, teacher, optimizer, loader, labels_t, classifier, params, env, run, steps, total,
                stop, checkpoint,
            )  # fmt: skip
            step = run.step
            state = None  # a mid-epoch state serves only the epoch it was saved in
            row = {
                "epoch": epoch,
                **stats,
                "structural_names": int(len(np.unique(labels))),
                "structural_changed": float(np.mean(labels != previous)),
                "structural_top1": float(100 * top1_accuracy(labels, gt)),
                "teacher_top1_train": teacher_top1,
            }
            evaluated = (epoch + 1) % params.eval_every == 0 or epoch == params.epochs - 1
            predicted: dict[str, np.ndarray] = {}
            for role, module in (("student", student), ("teacher", teacher)):
                metrics = {"top1": math.nan, "cluster_acc": math.nan}
                if evaluated and len(test_split.paths):
                    ids, pred, metrics = evaluate_on_split(
                        module, test_split, clip.preprocess, classifier_np, params, env
                    )
                    predicted["image_id"], predicted[f"{role}_vocab_index"] = ids, pred
                row[f"{role}_test_top1"] = float(metrics["top1"])
                row[f"{role}_test_cluster_acc"] = float(metrics["cluster_acc"])
            if predicted:
                test_predictions.append(pd.DataFrame({"epoch": epoch, **predicted}))
            history.append(row)
            if env.is_main:
                log.info(
                    "epoch %d: %s",
                    epoch,
                    {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()},
                )
            save(epoch + 1, step, labels, partition)
            distributed.barrier()
            if stop.agreed(lambda v: max_over_ranks(v, env)):  # saved at the epoch's end: stop here
                raise Preempted(stop.received or "a signal", epoch + 1, 0, str(paths.state))

    frame = pd.DataFrame(history)
    if env.is_main:
        for path, module in ((paths.student, student), (paths.teacher, teacher)):
            with atomic_path(path) as tmp:
                torch.save(module.state_dict(), tmp)
        write_table(_test_epochs(test_predictions), paths.test_epochs)
        write_table(frame, paths.history)
    distributed.barrier()
    return frame


def _test_epochs(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The per-epoch test predictions as one table (:attr:`TrainPaths.test_epochs`)."""
    columns = ["image_id", "epoch", "student_vocab_index", "teacher_vocab_index"]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in columns})
    return pd.concat(frames, ignore_index=True)[columns]
