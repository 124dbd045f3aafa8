"""What a person reads first: one row per image with the name the final model gave it.

The *final model* of the workflow is the self-trained student (rule ``predict``, column
``student_vocab_index``): every dataset is self-trained, so the student's names are the ones S3A
delivers. The table also carries the structural cluster (the discovered class the image was put in
on the train split), the student's runner-up names, and the zero-shot baseline's name, so a reader
sees what self-training changed.

Columns of :func:`names_table` (``names.parquet``; ``names.csv`` has the same columns with the
runner-ups joined by ``"; "``):

==================  ===========  =======================================================================
column              dtype        meaning
==================  ===========  =======================================================================
image_id            int64        the manifest's image id
path                str          the image file
split               str          ``train`` / ``test`` (an unlabeled ``folder`` has only ``train``)
name                str          the final model's name (a vocabulary name)
score               float32      its softmax probability over the whole vocabulary
cluster             Int64        the discovered class (structural cluster); <NA> outside the train split
runner_up_names     list[str]    the next best names of the final model, best first, distinct
zeroshot_name       str          the zero-shot baseline's name (CLIP argmax over the vocabulary)
zeroshot_score      float32      its probability
tags                list[struct] only with tags (photo folders, ``names.tags.enabled``): the names present in
                                 the image, ``{name, score}`` best first (``s3a.multilabel.openvocab.tags``);
                                 the CSV writes them ``name:score; name:score``; an image with no tag
                                 has ``[]``
==================  ===========  =======================================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from s3a.classify import LOGIT_SCALE
from s3a.device import pick_device, tensor_view
from s3a.io import atomic_path

__all__ = [
    "NAMES_COLUMNS",
    "TAGS_TYPE",
    "top_names",
    "names_table",
    "tag_lists",
    "names_arrow",
    "tags_text",
    "write_names_csv",
]

NAMES_COLUMNS: tuple[str, ...] = (
    "image_id",
    "path",
    "split",
    "name",
    "score",
    "cluster",
    "runner_up_names",
    "zeroshot_name",
    "zeroshot_score",
)
#: the Parquet type of the ``tags`` column
TAGS_TYPE = pa.list_(pa.struct([pa.field("name", pa.string()), pa.field("score", pa.float32())]))


def top_names(
    image_embeddings: np.ndarray,
    classifier: np.ndarray,
    k: int,
    scale: float = LOGIT_SCALE,
    chunk: int = 4096,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most probable classifier rows of every image under ``softmax(scale * z @ W.T)``.

    Computed ``chunk`` images at a time, so memory is ``chunk x C`` floats whatever ``N`` is
    (ImageNet-1K train: 1.28M images x 20,071 names is 313 chunks of 4096 x 20,071, about 330 MB each).

    Args:
        image_embeddings: ``(N, D)`` unit-norm.
        classifier: ``(C, D)`` unit-norm rows.
        k: how many rows per image, ``1 <= k <= C``.

    Returns:
        ``(index, prob)``: ``(N, k)`` int64 row indices, best first, and ``(N, k)`` float32 probabilities.
    """
    if not 1 <= k <= len(classifier):
        raise ValueError(f"top_names needs 1 <= k <= {len(classifier)} (classifier rows), got {k}")
    dev = pick_device(device)
    w = tensor_view(np.ascontiguousarray(classifier, dtype=np.float32)).to(dev)
    index, prob = [np.zeros((0, k), np.int64)], [np.zeros((0, k), np.float32)]
    with torch.inference_mode():
        for s in range(0, len(image_embeddings), chunk):
            z = tensor_view(np.ascontiguousarray(image_embeddings[s : s + chunk], np.float32)).to(dev)
            p, i = torch.softmax(scale * z @ w.T, dim=-1).topk(k, dim=-1)
            index.append(i.cpu().numpy().astype(np.int64))
            prob.append(p.cpu().numpy().astype(np.float32))
    return np.concatenate(index), np.concatenate(prob)


def names_table(
    manifest: pd.DataFrame,
    vocabulary: pd.DataFrame,
    final: pd.DataFrame,
    zeroshot: pd.DataFrame,
    clusters: pd.DataFrame,
    tags: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Join the final model's names, the clusters and the zero-shot names into one row per image.

    Args:
        manifest: ``image_id``, ``path``, ``split``.
        vocabulary: ``vocab_index``, ``name``.
        final: the final model's predictions, ``image_id``, ``student_vocab_index``,
            ``student_score``, ``student_runner_ups`` (list of vocabulary indices, best first).
        zeroshot: ``image_id``, ``pred_vocab_index``, ``score``.
        clusters: ``image_id``, ``cluster`` (the structural labels of the train split).
        tags: optional long tags table ``image_id``, ``rank``, ``vocab_index``, ``score``
            (:data:`s3a.multilabel.openvocab.tags.TAG_COLUMNS`); adds the ``tags`` column (:func:`tag_lists`).

    Returns:
        The columns of :data:`NAMES_COLUMNS` (and ``tags``), one row per image of ``final`` (images
        that could not be read have no prediction and no row), in image-id order.

    Raises:
        ValueError: ``final`` names images the manifest or the zero-shot table lacks.
    """
    name_of = pd.Series(vocabulary["name"].to_numpy(), index=vocabulary["vocab_index"].to_numpy())
    rows = final.sort_values("image_id").reset_index(drop=True)
    known = manifest.set_index("image_id")
    missing = ~rows.image_id.isin(known.index) | ~rows.image_id.isin(zeroshot.image_id)
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} predicted images are missing from the manifest or the zero-shot table"
        )
    zs = zeroshot.set_index("image_id").loc[rows.image_id]
    cluster = clusters.set_index("image_id")["cluster"].reindex(rows.image_id)
    table = pd.DataFrame(
        {
            "image_id": rows.image_id.to_numpy(np.int64),
            "path": known.loc[rows.image_id, "path"].to_numpy(object),
            "split": known.loc[rows.image_id, "split"].to_numpy(object),
            "name": name_of.loc[rows.student_vocab_index].to_numpy(object),
            "score": rows.student_score.to_numpy(np.float32),
            "cluster": pd.array(cluster.to_numpy(), dtype="Int64"),
            "runner_up_names": [list(name_of.loc[list(r)]) for r in rows.student_runner_ups],
            "zeroshot_name": name_of.loc[zs.pred_vocab_index].to_numpy(object),
            "zeroshot_score": zs.score.to_numpy(np.float32),
        }
    )
    if tags is not None:
        table["tags"] = tag_lists(table.image_id.to_numpy(), tags, name_of)
    return table[[*NAMES_COLUMNS, *(["tags"] if tags is not None else [])]]


def tag_lists(image_ids: np.ndarray, tags: pd.DataFrame, name_of: pd.Series) -> list[list[dict]]:
    """Each image's tags, ``[{"name": ..., "score": ...}]`` best first (by ``rank``), ``[]`` for an image
    without one; ``name_of`` maps ``vocab_index`` to name. One pass over the long table grouped by
    image id (its rows sorted once), so memory is the table and one small list per image."""
    rows = tags.sort_values(["image_id", "rank"], kind="stable")
    names = name_of.loc[rows.vocab_index].to_numpy(object)
    scores = rows.score.to_numpy(np.float64)
    ids = rows.image_id.to_numpy(np.int64)
    wanted = np.asarray(image_ids, np.int64)
    lo, hi = np.searchsorted(ids, wanted, "left"), np.searchsorted(ids, wanted, "right")
    return [
        [{"name": str(names[j]), "score": float(scores[j])} for j in range(a, b)]
        for a, b in zip(lo, hi, strict=True)
    ]


def names_arrow(table: pd.DataFrame) -> pa.Table:
    """The names table as Arrow, ``tags`` typed :data:`TAGS_TYPE` (even when every list is empty)."""
    if "tags" not in table:
        return pa.Table.from_pandas(table, preserve_index=False)
    out = pa.Table.from_pandas(table.drop(columns="tags"), preserve_index=False)
    return out.append_column("tags", pa.array(list(table.tags), type=TAGS_TYPE))


def tags_text(tags) -> str:
    """One image's tags as the CSV writes them: ``name:score; name:score`` (scores to 3 decimals)."""
    return "; ".join(f"{t['name']}:{t['score']:.3f}" for t in tags)


def write_names_csv(table: pd.DataFrame, path: str) -> None:
    """Write the names table as CSV (runner-ups joined by ``"; "``, tags as :func:`tags_text`), atomically."""
    flat = table.assign(runner_up_names=["; ".join(r) for r in table.runner_up_names])
    if "tags" in flat:
        flat["tags"] = [tags_text(t) for t in flat.tags]
    with atomic_path(path) as tmp:
        flat.to_csv(tmp, index=False, float_format="%.4f")
