"""Steps of the open-vocabulary multi-label rules (spec 8, 10): one function per rule, each a composition of
:mod:`.openvocab` and :mod:`.discovery`; the adapters in ``workflow/scripts/`` (named as their rules) only
read files and call these. The CLIP-Decoder rules' steps are in :mod:`.headsteps`.

| rule | function |
|---|---|
| ``openvocab_scores`` | :func:`read_views`, :func:`openvocab_scores` |
| ``openvocab_labels`` | :func:`openvocab_labels` |
| ``evaluate_openvocab`` | :func:`evaluate_openvocab_step` |
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from s3a.io import read_embeddings
from s3a.multilabel.data import attach_vocab_index
from s3a.multilabel.discovery import discover_cluster_vote
from s3a.multilabel.metrics import EVAL_COLUMNS, EvalParams
from s3a.multilabel.openvocab import (
    discover_frequency,
    discovery_metrics,
    evaluate_openvocab,
    image_scores,
    label_subtrees,
    read_wordnet_hypernyms,
    view_topk,
)
from s3a.multilabel.pseudo import PseudoParams
from s3a.multilabel.tiles import read_tiles

__all__ = [
    "DISCOVERED_COLUMNS",
    "DISCOVERY_METRIC_COLUMNS",
    "read_views",
    "openvocab_scores",
    "openvocab_labels",
    "evaluate_openvocab_step",
]

log = logging.getLogger(__name__)
DISCOVERED_COLUMNS = ("rank", "vocab_index", "score_sum", "n_images")
#: extra columns of the ``ov_*`` rows (NaN without discovery)
DISCOVERY_METRIC_COLUMNS = ("n_discovered", "discovery_recall", "discovery_precision")


def read_views(
    embeddings_path: str | Path | None, tiles_path: str | Path | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(image_ids (N,), global (N, D) | None, tiles (N, M, D) | None)`` of one split from
    ``embed/{split}`` and ``ml/tiles/{split}`` (either path may be ``None``), restricted to the images
    present in both, in the embeddings' order. Memory: the float32 arrays (NUS-WIDE train, 150k
    images, M 9, D 512: 0.3 GB global + 2.8 GB tiles)."""
    if embeddings_path is None and tiles_path is None:
        raise ValueError("read_views needs the global embeddings, the tiles or both")
    g_ids, glob = read_embeddings(embeddings_path) if embeddings_path else (None, None)
    t_ids, tiles = read_tiles(tiles_path) if tiles_path else (None, None)
    if g_ids is None or t_ids is None:
        return (g_ids if t_ids is None else t_ids), glob, tiles
    common = np.isin(g_ids, t_ids)
    if not common.all() or len(t_ids) != len(g_ids):
        log.info("%d images have global and tile embeddings (%d, %d)", common.sum(), len(g_ids), len(t_ids))
    ids = g_ids[common]
    return ids, glob[common], tiles[pd.Index(t_ids).get_indexer(ids)]


def _vocab_rows(vocab_ids: np.ndarray, classifier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(vocab_ids)
    return np.asarray(vocab_ids, np.int64)[order], np.asarray(classifier)[order]


def openvocab_scores(
    image_ids: np.ndarray,
    global_emb: np.ndarray,
    tile_emb: np.ndarray | None,
    vocab_ids: np.ndarray,
    vocab_classifier: np.ndarray,
    openvocab: Mapping,
) -> pd.DataFrame:
    """Rule ``openvocab_scores``: :func:`~s3a.multilabel.openvocab.view_topk` with
    ``openvocab.topk_per_view`` and ``openvocab.temperature``; ``vocab_index`` holds the vocabulary
    classifier's ids. Rows: N x (M + 1) x k (ImageNet-scale cost in :mod:`.openvocab`)."""
    vocab_ids, vocab_classifier = _vocab_rows(vocab_ids, vocab_classifier)
    table = view_topk(
        image_ids,
        global_emb,
        tile_emb,
        vocab_classifier,
        int(openvocab.get("topk_per_view", 20)),
        openvocab.get("temperature", 100.0),
    )
    table["vocab_index"] = vocab_ids[table["vocab_index"].to_numpy()]
    return table


def _empty_discovered() -> pd.DataFrame:
    types = {"rank": np.int64, "vocab_index": np.int64, "score_sum": np.float64, "n_images": np.int64}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in types.items()})


def openvocab_labels(
    views: pd.DataFrame,
    openvocab: Mapping,
    pseudo: Mapping | None = None,
    global_emb: np.ndarray | None = None,
    tile_emb: np.ndarray | None = None,
    vocab_ids: np.ndarray | None = None,
    vocab_classifier: np.ndarray | None = None,
    kmeans: Mapping | None = None,
    vote: Mapping | None = None,
    device: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rule ``openvocab_labels``: ``(scores, discovered)``.

    ``scores`` = :func:`~s3a.multilabel.openvocab.image_scores` of the view table (M = the tile views
    it holds) under the ``multilabel.pseudo`` aggregation. ``discovered`` (:data:`DISCOVERED_COLUMNS`)
    by ``openvocab.discovery``: ``none`` (no rows), ``frequency``
    (:func:`~s3a.multilabel.openvocab.discover_frequency` of the scores) or ``cluster_vote``
    (:func:`~s3a.multilabel.discovery.discover_cluster_vote` on the tile views, ``views: all`` adds
    the global ones; ``max_points``, ``discover.kmeans``/``discover.vote``), ``n_labels`` names.

    Raises:
        ValueError: unknown discovery, discovery without ``n_labels``, cluster_vote without embeddings.
    """
    ids = views["view"].to_numpy()
    n_tiles = int(ids.max()) + 1 if len(ids) and ids.max() >= 0 else 0
    scores = image_scores(views, n_tiles, PseudoParams(**(pseudo or {})))
    how, n_labels = openvocab.get("discovery", "none"), openvocab.get("n_labels")
    if how == "none":
        return scores, _empty_discovered()
    if how not in ("frequency", "cluster_vote"):
        raise ValueError(f"openvocab.discovery must be none, frequency or cluster_vote, got {how!r}")
    if n_labels is None:
        raise ValueError(f"openvocab.discovery {how} needs openvocab.n_labels (the names to discover)")
    if how == "frequency":
        return scores, discover_frequency(scores, int(n_labels))
    if vocab_ids is None or vocab_classifier is None or tile_emb is None:
        raise ValueError("cluster_vote discovery needs the tile embeddings and the vocabulary classifier")
    from s3a.discover.cluster import KMeansParams
    from s3a.discover.vote import VoteParams

    vocab_ids, vocab_classifier = _vocab_rows(vocab_ids, vocab_classifier)
    which = openvocab.get("views", "tiles")
    if which not in ("tiles", "all"):
        raise ValueError(f"openvocab.views must be tiles or all, got {which!r}")
    found = discover_cluster_vote(
        global_emb if which == "all" else None,
        tile_emb,
        vocab_classifier,
        int(n_labels),
        KMeansParams(**(kmeans or {})),
        VoteParams(**(vote or {})),
        openvocab.get("max_points"),
        device,
    )
    found["vocab_index"] = vocab_ids[found["vocab_index"].to_numpy()]
    return scores, found


def _hypernyms(openvocab: Mapping) -> dict | None:
    if not openvocab.get("hierarchy", True):
        return None
    folder = Path(openvocab.get("wordnet_dir", "/usr/share/wordnet"))
    if not folder.is_dir():
        raise FileNotFoundError(
            f"openvocab.hierarchy is true but the WordNet folder {folder} (openvocab.wordnet_dir) does not "
            "exist: install the Debian package wordnet-base (WordNet 3.0, /usr/share/wordnet), point "
            "openvocab.wordnet_dir at a folder holding data.noun, or set openvocab.hierarchy: false"
        )
    return read_wordnet_hypernyms(folder)


def evaluate_openvocab_step(
    scores: pd.DataFrame,
    discovered: pd.DataFrame,
    labels: pd.DataFrame,
    label_set: pd.DataFrame,
    manifest: pd.DataFrame,
    vocabulary: pd.DataFrame,
    openvocab: Mapping,
    params: EvalParams | None = None,
    **keys: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rule ``evaluate_openvocab``: ``(ov_exact rows, ov_hier rows)``.

    The label set gets its ``vocab_index`` from the vocabulary
    (:func:`~s3a.multilabel.data.attach_vocab_index`); the images are every manifest image of the
    split the scores cover (images without a kept name score 0). Exact subtrees, and with
    ``openvocab.hierarchy`` the WordNet ones (``read_wordnet_hypernyms(openvocab.wordnet_dir)``);
    each row (:data:`~s3a.multilabel.metrics.EVAL_COLUMNS`, ``split`` = that split) also holds
    :data:`DISCOVERY_METRIC_COLUMNS` (:func:`~s3a.multilabel.openvocab.discovery_metrics` of the
    discovered names; NaN without discovery). ``hierarchy: false`` gives an empty ``ov_hier`` table.
    ``keys``: ``dataset``, ``model``.

    Raises:
        FileNotFoundError: hierarchy on and no WordNet folder (names the folder and ``wordnet-base``).
        ValueError: the scores cover no image of the manifest, or images of several splits.
    """
    hypernyms = _hypernyms(openvocab)
    splits = manifest.set_index("image_id")["split"].reindex(np.unique(scores["image_id"])).dropna().unique()
    if len(splits) != 1:
        raise ValueError(f"open-vocabulary scores must cover images of one split, found {sorted(splits)}")
    split = str(splits[0])
    image_ids = np.sort(manifest.loc[manifest["split"] == split, "image_id"].to_numpy(np.int64))
    label_set = attach_vocab_index(label_set, vocabulary)
    columns = [*EVAL_COLUMNS, *DISCOVERY_METRIC_COLUMNS]
    found = discovered["vocab_index"].to_numpy(np.int64)
    out = []
    for stage, trees in (("ov_exact", None), ("ov_hier", hypernyms)):
        if stage == "ov_hier" and trees is None:
            out.append(pd.DataFrame({c: pd.Series(dtype=object) for c in columns}))
            continue
        subtrees = label_subtrees(label_set, vocabulary, trees)
        rows = evaluate_openvocab(
            scores, image_ids, labels, label_set, subtrees, params, **keys, stage=stage, split=split
        )
        disc = discovery_metrics(found, subtrees) if len(found) else {}
        rows["n_discovered"] = disc.get("n_discovered", np.nan)
        rows["discovery_recall"] = disc.get("recall", np.nan)
        rows["discovery_precision"] = disc.get("precision", np.nan)
        out.append(rows[columns])
    return out[0], out[1]
