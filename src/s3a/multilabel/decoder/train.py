"""Training and prediction of the CLIP-Decoder head (spec 7) on precomputed patch tokens.

:func:`train_head` fits a :class:`~s3a.multilabel.decoder.head.CLIPDecoderHead` with ``β·ASL + α·L_clip``
(backbone frozen: the tokens come from :func:`~s3a.multilabel.decoder.head.encode_patch_tokens`);
:func:`predict_head` scores a label set densely, :func:`head_topk` keeps each image's k best labels
of a large label set (all 20,071 vocabulary names) without an ``N x C`` matrix.

The rules: ``train_mldecoder`` is :func:`train_mldecoder` (targets from CDUL's pseudo-labels or the
seen labels' ground truth, then :func:`train_head`) and :func:`save_head_model`;
``predict_mldecoder`` is :func:`load_head_model` and :func:`predict_mldecoder`. Their settings come
from the config through :func:`s3a.multilabel.learners.head_params` (in the rule's adapter).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn
from tqdm.auto import tqdm

from s3a.io import atomic_path
from s3a.multilabel.aggregate import PseudoParams, pseudo_targets
from s3a.multilabel.decoder.head import CLIPDecoderHead, MLDecoderParams
from s3a.multilabel.decoder.zsl import SUPERVISIONS, gt_targets, zsl_split
from s3a.multilabel.losses import AslParams, alignment_loss, asymmetric_loss
from s3a.resume import fingerprint, load_state, save_state

__all__ = [
    "HeadTrainParams",
    "HeadResult",
    "train_head",
    "predict_head",
    "head_topk",
    "TrainedHead",
    "train_mldecoder",
    "save_head_model",
    "load_head_model",
    "predict_mldecoder",
    "HEAD_MODEL_KIND",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadTrainParams:
    """Training of :class:`CLIPDecoderHead` on precomputed tokens (config ``multilabel.train`` for
    ``learner: mldecoder``).

    Attributes:
        epochs: passes over the train images.
        batch_size: images per step.
        lr: Adam learning rate.
        weight_decay: L2 weight decay (coupled, as torch Adam applies it) on matrices only; 1-D
            parameters and biases get none.
        seed: seed of the initialisation and the shuffle order.
        device: ``cpu`` or ``cuda``.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(
                "mldecoder training needs epochs >= 1, batch_size >= 1, lr > 0, weight_decay >= 0"
            )


@dataclass
class HeadResult:
    """Result of :func:`train_head`: the head (on the CPU, eval mode) and the per-epoch ``history``
    (``epoch, loss, loss_cls, loss_clip, kappa``; losses are means per image)."""

    head: CLIPDecoderHead
    history: pd.DataFrame


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in module.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _as_tensor(array: np.ndarray, index: np.ndarray | slice, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array[index], dtype=np.float32)).to(device)


def _random_state(rng: np.random.Generator, device: torch.device) -> dict:
    """The shuffle generator's state and torch's (dropout: CPU, and the device's on CUDA)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "cuda": cuda}


def _set_random_state(state: dict, rng: np.random.Generator, device: torch.device) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def train_head(
    tokens: np.ndarray,
    targets: np.ndarray,
    text: np.ndarray,
    params: HeadTrainParams = HeadTrainParams(),
    head_params: MLDecoderParams | None = None,
    asl: AslParams | None = None,
    progress: bool = True,
    state_path: str | None = None,
) -> HeadResult:
    """Train a :class:`CLIPDecoderHead` with ``β·ASL + α·L_clip`` (spec 7), backbone frozen.

    Args:
        tokens: ``(N, P, F)`` precomputed patch tokens (:func:`patch_tokens`; float16 or float32, a
            ``numpy.memmap`` works: batches are read by index).
        targets: ``(N, C)`` targets in [0, 1] over the training label set: ground truth of the seen
            labels (``supervision: gt_seen``) or CDUL pseudo-labels (``pseudo``); see
            :mod:`s3a.multilabel.decoder.zsl`.
        text: ``(C, D)`` CLIP text embeddings of the training label set.
        head_params: the head (``None``: the defaults of
            :class:`~s3a.multilabel.decoder.head.MLDecoderParams`).
        asl: the ASL settings (``None``: the defaults of :class:`~s3a.multilabel.losses.AslParams`).
        state_path: resume file (outside the rule's outputs, e.g. under ``resources/``): the head,
            the optimiser, the shuffle and dropout random states and the history are saved after
            every epoch (:mod:`s3a.resume`), and a run whose settings and inputs match
            continues after the last saved epoch and ends identical to an uninterrupted run. Size:
            the head and Adam's two moments (E 768: ~80 MB); the inputs are hashed once per run.

    Cost: ``epochs · N`` image passes of the head (module docstring); memory: the head, one batch
    of tokens and its activations. At NUS-WIDE scale (150k x 196 x 512 float16 tokens) the token
    array is 30 GB: pass a memmap.
    """
    n, _, f = tokens.shape
    if targets.shape[0] != n or targets.shape[1] != text.shape[0]:
        raise ValueError(f"targets {targets.shape} must be (N={n}, C={text.shape[0]})")
    asl = asl or AslParams()
    head_params = head_params or MLDecoderParams()
    torch.manual_seed(params.seed)
    dev = torch.device(params.device)
    head = CLIPDecoderHead(f, text.shape[1], head_params).to(dev)
    opt = torch.optim.Adam(_param_groups(head, params.weight_decay), lr=params.lr)
    w = torch.from_numpy(np.ascontiguousarray(text, dtype=np.float32)).to(dev)
    rng = np.random.default_rng(params.seed)
    rows, first = [], 1
    digest = fingerprint((params, head_params, asl), tokens, targets, text) if state_path else ""
    state = load_state(state_path, digest, dev) if state_path else None
    if state is not None:
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        _set_random_state(state["random"], rng, dev)
        rows, first = state["rows"], state["epoch"] + 1
        log.info("resuming the mldecoder head after epoch %d from %s", state["epoch"], state_path)
    head.train()
    epochs = range(first, params.epochs + 1)
    for epoch in tqdm(epochs, desc="mldecoder", unit="epoch", disable=not progress):
        order = rng.permutation(n)
        sums = np.zeros(3)
        for s in range(0, n, params.batch_size):
            idx = np.sort(order[s : s + params.batch_size])  # sorted: memmap reads in file order
            t, y = _as_tensor(tokens, idx, dev), _as_tensor(targets, idx, dev)
            memory = head.memory(t)
            logits = head.decode(memory, head.queries(w))
            l_cls = asymmetric_loss(logits, y, asl)
            v, q = head.align_embeddings(w, memory=memory)
            l_clip = alignment_loss(v, q, y, head.kappa)
            loss = head_params.cls_loss_weight * l_cls + head_params.clip_loss_weight * l_clip * len(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += [float(loss.detach()), float(l_cls.detach()), float(l_clip.detach()) * len(idx)]
        rows.append(
            {
                "epoch": epoch,
                "loss": sums[0] / n,
                "loss_cls": sums[1] / n,
                "loss_clip": sums[2] / n,
                "kappa": float(head.kappa.detach()),
            }
        )
        if state_path:
            state = {"fingerprint": digest, "epoch": epoch, "rows": rows, "random": _random_state(rng, dev)}
            save_state(state_path, {**state, "head": head.state_dict(), "opt": opt.state_dict()})
    head.eval()
    return HeadResult(head.cpu(), pd.DataFrame(rows))


def _scores(head: CLIPDecoderHead, tokens: np.ndarray, text: np.ndarray, chunk: int, device: str):
    dev = torch.device(device)
    head = head.to(dev).eval()
    w = torch.from_numpy(np.ascontiguousarray(text, dtype=np.float32)).to(dev)
    with torch.inference_mode():
        q = head.queries(w)
        for s in range(0, len(tokens), chunk):
            logits = head.decode(head.memory(_as_tensor(tokens, slice(s, s + chunk), dev)), q)
            yield s, torch.sigmoid(logits.double())  # float32 would tie every logit above ~16.6 at 1.0


def predict_head(
    head: CLIPDecoderHead, tokens: np.ndarray, text: np.ndarray, image_chunk: int = 256, device: str = "cpu"
) -> np.ndarray:
    """``(N, C)`` float64 sigmoid scores of a label set (``text`` ``(C, D)``) for ``tokens`` ``(N, P,
    F)``. Dense: meant for label sets (C <= a few thousand; ``8 · N · C`` bytes); over the
    vocabulary use :func:`head_topk`."""
    out = np.empty((len(tokens), len(text)), np.float64)
    for s, scores in _scores(head, tokens, text, image_chunk, device):
        out[s : s + len(scores)] = scores.cpu().numpy()
    return out


def head_topk(
    head: CLIPDecoderHead,
    tokens: np.ndarray,
    text: np.ndarray,
    k: int,
    image_chunk: int = 64,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """``(indices (N, k) int64, scores (N, k) float64)``: each image's k best labels of ``text``
    ``(C, D)`` by sigmoid score, e.g. all 20,071 vocabulary names; memory ``image_chunk · C`` scores
    at a time, never ``N · C``."""
    k = min(k, len(text))
    idx = np.empty((len(tokens), k), np.int64)
    val = np.empty((len(tokens), k), np.float64)
    for s, scores in _scores(head, tokens, text, image_chunk, device):
        top = torch.topk(scores, k, dim=1)
        idx[s : s + len(scores)] = top.indices.cpu().numpy()
        val[s : s + len(scores)] = top.values.cpu().numpy()
    return idx, val


#: ``kind`` of a token-trained head file (the image learners' ``model.pt`` holds a ``learner`` key)
HEAD_MODEL_KIND = "mldecoder_tokens"


class _Rows:
    """Rows ``rows`` (sorted) of an array read only when indexed: a subset of a memmap without a copy,
    with the ``shape``/``dtype``/indexing :func:`train_head` and :func:`s3a.resume.fingerprint` use."""

    def __init__(self, array: np.ndarray, rows: np.ndarray) -> None:
        self.array, self.rows = array, np.asarray(rows, dtype=np.int64)
        self.shape, self.dtype = (len(self.rows), *array.shape[1:]), array.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self.array[self.rows[index]])


# ------------------------------------------------------------------------------- the head


@dataclass
class TrainedHead:
    """A CLIP-Decoder head trained on tokens: the head (CPU, eval mode), its settings, the training
    label columns (``label_index`` values: all labels for ``pseudo``, the seen ones for ``gt_seen``)
    and the per-epoch history (:class:`~s3a.multilabel.decoder.train.HeadResult`'s)."""

    head: CLIPDecoderHead
    params: MLDecoderParams
    label_indices: np.ndarray
    history: pd.DataFrame


def train_mldecoder(
    token_ids: np.ndarray,
    tokens: np.ndarray,
    classifier: np.ndarray,
    fit: HeadTrainParams,
    head_params: MLDecoderParams,
    asl: AslParams,
    supervision: str = "pseudo",
    pseudo_table: pa.Table | None = None,
    pseudo: Mapping | None = None,
    manifest: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
    label_set: pd.DataFrame | None = None,
    state_path: str | None = None,
    progress: bool = False,
) -> TrainedHead:
    """Rule ``train_mldecoder``: :func:`~s3a.multilabel.decoder.train.train_head` on the train split's tokens.

    Args:
        token_ids, tokens: the train split's ``(N,)`` ids and ``(N, P, D)`` tokens (a memmap is read
            by batch; a subset of its rows is never copied whole).
        classifier: ``(C, D)`` label classifier rows in ``label_index`` order
            (:func:`s3a.multilabel.classifier.read_classifier`).
        fit, head_params, asl: the training settings, the head and the loss (the config's
            ``multilabel.train`` gives them through :func:`s3a.multilabel.learners.head_params`;
            ``fit.device`` picks the device).
        supervision: ``pseudo`` (targets: :func:`~s3a.multilabel.aggregate.pseudo_targets` of
            ``pseudo_table`` re-aggregated under ``pseudo``, text: every label) or ``gt_seen``
            (:func:`~s3a.multilabel.decoder.zsl.zsl_split` of ``manifest``/``labels``/``label_set``:
            the train images with a seen label, their seen-label ground truth, the seen rows of W).
        state_path: the resume file (``resources/``), see ``train_head``.

    Memory: the ``(n, C)`` targets (NUS-WIDE 150k x 925 float32: 0.55 GB), one batch of tokens.

    Raises:
        ValueError: unknown supervision, missing inputs, no train image with targets.
    """
    if supervision not in SUPERVISIONS:
        raise ValueError(f"multilabel.train.supervision must be one of {SUPERVISIONS}, got {supervision!r}")
    classifier = np.asarray(classifier)
    token_ids = np.asarray(token_ids, dtype=np.int64)
    if supervision == "pseudo":
        if pseudo_table is None:
            raise ValueError("supervision pseudo needs the train split's pseudo-label table")
        known = pseudo_table.column("image_id").to_numpy()
        rows = np.flatnonzero(np.isin(token_ids, known))
        targets = pseudo_targets(pseudo_table, token_ids[rows], PseudoParams(**(pseudo or {})))
        columns = np.arange(len(classifier))
    else:
        if manifest is None or labels is None or label_set is None:
            raise ValueError("supervision gt_seen needs the manifest, labels and label_set tables")
        split = zsl_split(manifest, labels, label_set)
        rows = np.flatnonzero(np.isin(token_ids, split.train_ids))
        targets = gt_targets(labels, token_ids[rows], split.seen, len(label_set))
        columns = split.seen
    if not len(rows):
        raise ValueError(f"no train image with patch tokens has {supervision} targets")
    if len(rows) < len(token_ids):
        log.info("training on %d of the %d images with tokens", len(rows), len(token_ids))
    text = classifier[columns]
    subset = tokens if len(rows) == len(token_ids) else _Rows(tokens, rows)
    result = train_head(subset, targets, text, fit, head_params, asl, progress, state_path)
    return TrainedHead(result.head, head_params, np.asarray(columns, np.int64), result.history)


def save_head_model(path: str | Path, trained: TrainedHead) -> None:
    """The head file ``ml/mldecoder/model.pt``: weights, ``MLDecoderParams``, token and text widths,
    the training label columns and their count (written atomically)."""
    head = trained.head
    state = {
        "kind": HEAD_MODEL_KIND,
        "head": head.state_dict(),
        "mldecoder": dataclasses.asdict(trained.params),
        "token_dim": int(head.memory_proj.in_features),
        "text_dim": int(head.query_proj.in_features),
        "n_labels": len(trained.label_indices),
        "label_indices": np.asarray(trained.label_indices, np.int64),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_head_model(path: str | Path) -> tuple[CLIPDecoderHead, dict]:
    """``(head in eval mode on the CPU, the file's other fields)`` from :func:`save_head_model`.

    Raises:
        ValueError: the file is not a token-trained head (e.g. an image learner's ``model.pt``).
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("kind") != HEAD_MODEL_KIND:
        raise ValueError(f"{path} is not a CLIP-Decoder head trained on patch tokens")
    head = CLIPDecoderHead(state["token_dim"], state["text_dim"], MLDecoderParams(**state["mldecoder"]))
    head.load_state_dict(state.pop("head"))
    return head.eval(), state


def predict_mldecoder(
    head: CLIPDecoderHead,
    tokens: np.ndarray,
    classifier: np.ndarray,
    image_chunk: int = 256,
    device: str | None = None,
) -> np.ndarray:
    """Rule ``predict_mldecoder``: ``(N, C)`` sigmoid scores over *every* label of ``classifier``
    (``(C, D)`` in ``label_index`` order, whatever the training columns were), :func:`predict_head` in
    chunks of ``image_chunk`` images (memory: the ``N x C`` float64 output, NUS-WIDE test ~83k x
    1,006: 0.67 GB)."""
    from s3a.device import pick_device

    return predict_head(head, tokens, np.asarray(classifier), image_chunk, str(pick_device(device)))
