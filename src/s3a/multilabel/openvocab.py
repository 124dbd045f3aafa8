"""Open-vocabulary multi-label over the S3A vocabulary (spec 8): no label set given.

1. :func:`view_topk` — per view (the global view and each of the M tiles) ``softmax(τ · V z)`` over
   all |V| = 20,071 vocabulary names, keeping the top-k (``openvocab.topk_per_view``, 20): the long
   table ``image_id, view (int8, -1 = global), vocab_index, prob (float64)`` of
   ``ml/openvocab/{split}.parquet``. Probabilities stay float64 here and in every score after it
   (a float32 probability within 6e-8 of 1 rounds to 1.0 and ties: :mod:`s3a.multilabel.pseudo`).
2. :func:`image_scores` — per image, the CDUL aggregation of spec 5
   (:func:`s3a.multilabel.pseudo.aggregate`, any ``PseudoParams``) on the union of its kept names,
   a name missing from a view scoring 0 there (so ``β`` is 0 unless all M tiles kept the name):
   long ``image_id, vocab_index, s_global, s_agg, score`` (float64).
3. :func:`discover_frequency` — optional label discovery: the n names with the largest
   ``Σ_i score`` (``ml/openvocab/label_set.parquet``); the cluster-vote variant, in the same
   columns, is :func:`s3a.multilabel.discovery.discover_cluster_vote`.
4. Evaluation against a dataset's labels: :func:`label_subtrees` maps each label to vocabulary names —
   ``exact`` its own ``vocab_index``, ``hierarchical`` every name in its WordNet hyponym subtree
   (hypernym edges from :func:`read_wordnet_hypernyms`), so ``golden_retriever`` counts for ``dog``;
   :func:`subtree_scores` takes the max over the subtree; :func:`evaluate_openvocab` gives the
   metrics rows (stages ``ov_exact``, ``ov_hier``) and :func:`discovery_metrics` the recall and
   precision of discovered names.

Never an images x names matrix beyond one chunk: :func:`view_topk` holds ``chunk · (M+1) · |V|``
softmax values (chunk 32, M 9: 6.4M float64, 51 MB), :func:`image_scores` works on ``image_chunk``
images of the long table at a time.
Full scale (ImageNet-1K train, 1.28M images, M = 9, k = 20): 256M long rows (~5.6 GB Parquet
before compression: the float64 ``prob`` adds 1 GB to the 4.6 GB of a float32 one),
``1.28M · 10 · 20,071 · 512 · 2`` ≈ 260 TFLOP of products (minutes on a GPU, hours on a CPU). The
dense ``(n, C)`` label-score matrices of the evaluation are over the dataset's label set
(C <= 1,006), never the vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from s3a.multilabel.data import label_matrix
from s3a.multilabel.metrics import EVAL_COLUMNS, EvalParams, evaluate
from s3a.multilabel.pseudo import PseudoParams, ViewScores, aggregate, label_softmax, logit_scale

__all__ = [
    "OV_COLUMNS",
    "SCORE_COLUMNS",
    "view_topk",
    "image_scores",
    "discover_frequency",
    "read_wordnet_hypernyms",
    "label_subtrees",
    "subtree_scores",
    "evaluate_openvocab",
    "discovery_metrics",
]

log = logging.getLogger(__name__)
OV_COLUMNS = ("image_id", "view", "vocab_index", "prob")
SCORE_COLUMNS = ("image_id", "vocab_index", "s_global", "s_agg", "score")
GLOBAL_VIEW = -1


def view_topk(
    image_ids: np.ndarray,
    global_emb: np.ndarray,
    tile_emb: np.ndarray | None,
    vocab_classifier: np.ndarray,
    topk: int = 20,
    temperature: float | str = 100.0,
    chunk: int = 32,
) -> pd.DataFrame:
    """Top-``topk`` vocabulary names of every view (module docstring, step 1).

    Args:
        image_ids: ``(N,)`` ids of the rows.
        global_emb: ``(N, D)`` unit global embeddings.
        tile_emb: ``(N, M, D)`` unit tile embeddings, or ``None`` (global view only).
        vocab_classifier: ``(V, D)`` unit vocabulary text embeddings (``embed_vocabulary``).
        temperature: τ (``"repro"`` as in :class:`~s3a.multilabel.pseudo.PseudoParams`).
        chunk: images per step; memory ``chunk · (M+1) · V`` float64.

    Returns:
        :data:`OV_COLUMNS` sorted by ``(image_id, view, prob desc)``; ``view`` is -1 for the global
        view, else the tile index.
    """
    n, d = global_emb.shape
    m = 0 if tile_emb is None else tile_emb.shape[1]
    if tile_emb is not None and tile_emb.shape[::2] != (n, d) or vocab_classifier.shape[1] != d:
        tiles = None if tile_emb is None else tile_emb.shape
        raise ValueError(
            f"shapes disagree: global {global_emb.shape}, tiles {tiles}, vocabulary {vocab_classifier.shape}"
        )
    scale = logit_scale(temperature)
    k = min(topk, len(vocab_classifier))
    vt = np.asarray(vocab_classifier, np.float32).T
    views = np.arange(-1, m, dtype=np.int8)
    ids_out, view_out, idx_out, prob_out = [], [], [], []
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        x = np.asarray(global_emb[s:e], np.float32)[:, None, :]
        if m:
            x = np.concatenate([x, np.asarray(tile_emb[s:e], np.float32)], axis=1)
        prob = label_softmax(x.reshape(-1, d) @ vt, scale)  # ((e-s)·(M+1), V)
        top = np.argpartition(-prob, k - 1, axis=1)[:, :k]
        top_p = np.take_along_axis(prob, top, axis=1)
        order = np.argsort(-top_p, axis=1, kind="stable")
        idx_out.append(np.take_along_axis(top, order, axis=1).ravel())
        prob_out.append(np.take_along_axis(top_p, order, axis=1).ravel())
        ids_out.append(np.repeat(np.asarray(image_ids[s:e], np.int64), (m + 1) * k))
        view_out.append(np.tile(np.repeat(views, k), e - s))
    cat = np.concatenate if n else (lambda parts: np.zeros(0))
    return pd.DataFrame(
        {
            "image_id": cat(ids_out).astype(np.int64),
            "view": cat(view_out).astype(np.int8),
            "vocab_index": cat(idx_out).astype(np.int64),
            "prob": cat(prob_out).astype(np.float64),
        }
    )


def _aggregate_chunk(rows: pd.DataFrame, n_tiles: int, params: PseudoParams) -> pd.DataFrame:
    key = ["image_id", "vocab_index"]
    glob = rows[rows["view"] == GLOBAL_VIEW].set_index(key)["prob"].rename("g")
    tiles = rows[rows["view"] != GLOBAL_VIEW].groupby(key)["prob"].agg(["max", "min", "sum", "count"])
    merged = pd.concat([glob, tiles], axis=1).fillna(0.0)
    full = merged["count"].to_numpy() >= n_tiles
    views = ViewScores(
        s_global=merged["g"].to_numpy(np.float64),
        s_alpha=merged["max"].to_numpy(np.float64),
        s_beta=np.where(full, merged["min"].to_numpy(np.float64), 0.0),
        s_mean=merged["sum"].to_numpy(np.float64) / max(n_tiles, 1),
    )
    if n_tiles == 0:  # global view only: the local view is absent, score = S_g
        agg, final = views.s_global, views.s_global
    else:
        agg, final = aggregate(views, params)
    out = merged.index.to_frame(index=False)
    out["s_global"] = views.s_global
    out["s_agg"] = agg
    out["score"] = final
    return out


def image_scores(
    view_table: pd.DataFrame, n_tiles: int, params: PseudoParams | None = None, image_chunk: int = 65536
) -> pd.DataFrame:
    """Per-image vocabulary scores (module docstring, step 2) from a :func:`view_topk` table.

    Args:
        n_tiles: M, the number of tile views (0 when only the global view was kept).
        params: the aggregation's ζ, λ and ``local_reduce`` (``temperature`` was applied upstream;
            ``None``: the defaults).
        image_chunk: images aggregated at a time (memory linear in their rows).

    Returns:
        :data:`SCORE_COLUMNS`, one row per (image, kept name), sorted by (image_id, vocab_index).
    """
    params = params or PseudoParams()
    ids = view_table["image_id"].to_numpy()
    if len(ids) and (np.diff(ids) < 0).any():  # view_topk writes it sorted; others may not
        view_table = view_table.sort_values("image_id", kind="stable")
        ids = view_table["image_id"].to_numpy()
    unique = np.unique(ids)
    parts = []
    for s in range(0, len(unique), image_chunk):
        lo, hi = unique[s], unique[min(len(unique), s + image_chunk) - 1]
        a, b = np.searchsorted(ids, lo, "left"), np.searchsorted(ids, hi, "right")
        parts.append(_aggregate_chunk(view_table.iloc[a:b], n_tiles, params))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in SCORE_COLUMNS})
    out = pd.concat(parts, ignore_index=True).sort_values(["image_id", "vocab_index"], kind="stable")
    return out.astype({"image_id": np.int64, "vocab_index": np.int64}).reset_index(drop=True)[
        list(SCORE_COLUMNS)
    ]


def discover_frequency(scores: pd.DataFrame, n_labels: int) -> pd.DataFrame:
    """Label discovery by frequency: the ``n_labels`` names with the largest ``Σ_i score`` (ties by
    vocab_index): ``rank, vocab_index, score_sum, n_images`` (images keeping the name)."""
    if n_labels < 1:
        raise ValueError(f"openvocab.n_labels must be >= 1, got {n_labels}")
    agg = scores.groupby("vocab_index")["score"].agg(score_sum="sum", n_images="count").reset_index()
    agg = agg.sort_values(["score_sum", "vocab_index"], ascending=[False, True], kind="stable").head(n_labels)
    agg.insert(0, "rank", np.arange(len(agg), dtype=np.int64))
    return agg.reset_index(drop=True)


def read_wordnet_hypernyms(wordnet_dir: str | Path) -> dict[str, tuple[str, ...]]:
    """Noun hypernym edges ``wnid -> parent wnids`` (pointers ``@`` and instance ``@i``) from the
    WordNet 3.0 ``data.noun`` in ``wordnet_dir`` (e.g. Debian's ``wordnet-base``, ``/usr/share/wordnet``;
    ~82k synsets, ~1 s). wnids are ``n`` + the 8-digit offset, as ImageNet writes them.

    Raises:
        FileNotFoundError: no ``data.noun`` there (names the path and where to get it).
    """
    path = Path(wordnet_dir) / "data.noun"
    if not path.is_file():
        raise FileNotFoundError(
            f"no WordNet file {path}; install WordNet 3.0 (e.g. apt-get install wordnet-base) and set "
            "the WordNet folder, or turn openvocab.hierarchy off"
        )
    parents: dict[str, tuple[str, ...]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(" "):  # licence header
                continue
            fields = line.split(" | ", 1)[0].split()
            n_words = int(fields[3], 16)
            at = 4 + 2 * n_words
            n_ptr = int(fields[at])
            ptrs = fields[at + 1 : at + 1 + 4 * n_ptr]
            ups = tuple(
                f"n{ptrs[i + 1]}"
                for i in range(0, len(ptrs), 4)
                if ptrs[i] in ("@", "@i") and ptrs[i + 2] == "n"
            )
            if ups:
                parents[f"n{fields[0]}"] = ups
    return parents


def _ancestors(hypernyms: Mapping[str, Sequence[str]]):
    cache: dict[str, frozenset[str]] = {}

    def up(wnid: str) -> frozenset[str]:
        if wnid not in cache:
            cache[wnid] = frozenset()  # guards against cycles
            out = {wnid}
            for parent in hypernyms.get(wnid, ()):
                out |= up(parent)
            cache[wnid] = frozenset(out)
        return cache[wnid]

    return up


def label_subtrees(
    label_set: pd.DataFrame,
    vocabulary: pd.DataFrame,
    hypernyms: Mapping[str, Sequence[str]] | None = None,
) -> list[np.ndarray]:
    """Vocabulary names standing for each label (in ``label_index`` order), int64 arrays.

    A label's synsets are its ``wnid`` or, without one, every synset of its vocabulary entry
    (``vocab_index``; the merged senses of a name). ``hypernyms=None`` gives the *exact* map (the
    label's own ``vocab_index``, empty when -1); with hypernym edges it gives the *hierarchical*
    map: every vocabulary entry with a synset at or below one of the label's synsets. Cost:
    |V| synsets x their ancestor sets (memoised; ~21K x ~15).
    """
    label_set = label_set.sort_values("label_index")
    vidx = label_set["vocab_index"].to_numpy(dtype=np.int64)
    if hypernyms is None:
        return [np.array([v], np.int64) if v >= 0 else np.zeros(0, np.int64) for v in vidx]
    synsets_of = dict(zip(vocabulary["vocab_index"], vocabulary["synset_ids"], strict=True))
    owners: dict[str, list[int]] = {}
    for c, (wnid, v) in enumerate(zip(label_set["wnid"], vidx, strict=True)):
        own = (
            [str(wnid)]
            if isinstance(wnid, str) and wnid
            else (list(synsets_of.get(int(v), ())) if v >= 0 else [])
        )
        for s in own:
            owners.setdefault(s, []).append(c)
    up = _ancestors(hypernyms)
    members: list[set[int]] = [set() for _ in range(len(label_set))]
    for v, synsets in synsets_of.items():
        for s in synsets:
            for a in up(str(s)):
                for c in owners.get(a, ()):
                    members[c].add(int(v))
    return [np.array(sorted(m), np.int64) for m in members]


def subtree_scores(
    scores: pd.DataFrame, image_ids: np.ndarray, subtrees: Sequence[np.ndarray], column: str = "score"
) -> np.ndarray:
    """``(n, C)`` float64 label scores of ``image_ids``: per label the max of ``column`` over the
    names of its subtree that the image kept (0 when none)."""
    image_ids = np.asarray(image_ids, dtype=np.int64)
    out = np.zeros((len(image_ids), len(subtrees)), np.float64)
    pairs = pd.DataFrame(
        {
            "vocab_index": np.concatenate([t for t in subtrees] + [np.zeros(0, np.int64)]),
            "label": np.repeat(np.arange(len(subtrees)), [len(t) for t in subtrees]),
        }
    )
    rows = scores[["image_id", "vocab_index", column]].merge(pairs, on="vocab_index")
    row = pd.Index(image_ids).get_indexer(rows["image_id"].to_numpy())
    keep = row >= 0
    best = (
        pd.DataFrame(
            {"r": row[keep], "c": rows["label"].to_numpy()[keep], "s": rows[column].to_numpy()[keep]}
        )
        .groupby(["r", "c"])["s"]
        .max()
    )
    out[best.index.get_level_values(0), best.index.get_level_values(1)] = best.to_numpy()
    return out


def evaluate_openvocab(
    scores: pd.DataFrame,
    image_ids: np.ndarray,
    labels: pd.DataFrame,
    label_set: pd.DataFrame,
    subtrees: Sequence[np.ndarray],
    params: EvalParams | None = None,
    **keys: str,
) -> pd.DataFrame:
    """One metrics row (:data:`~s3a.multilabel.metrics.EVAL_COLUMNS`, subset ``all``) of open-vocabulary
    scores against a dataset's labels, over the labels with a non-empty subtree (``n_labels`` says
    how many; labels outside the vocabulary cannot be scored). Stage ``ov_exact`` with exact
    subtrees, ``ov_hier`` with hierarchical ones (pass it in ``keys``). Softmax-derived scores:
    CP..OF1 are NaN."""
    params = params or EvalParams()
    image_ids = np.asarray(image_ids, dtype=np.int64)
    cols = np.array([c for c, t in enumerate(subtrees) if len(t)], dtype=np.int64)
    y, difficult, _ = label_matrix(labels, image_ids, len(label_set))
    s = subtree_scores(scores, image_ids, [subtrees[c] for c in cols])
    rows = evaluate(y[:, cols], s, difficult[:, cols], params=params, thresholded=False, **keys)
    return pd.DataFrame(rows, columns=list(EVAL_COLUMNS))


def discovery_metrics(discovered: np.ndarray, subtrees: Sequence[np.ndarray]) -> dict[str, float]:
    """Recall (labels whose subtree holds a discovered name, over labels with a subtree) and
    precision (discovered names inside some label's subtree), in percent; with exact or
    hierarchical subtrees."""
    found = set(int(v) for v in np.asarray(discovered).ravel())
    scorable = [set(t.tolist()) for t in subtrees if len(t)]
    covered = set().union(*scorable) if scorable else set()
    recall = sum(bool(t & found) for t in scorable) / len(scorable) if scorable else float("nan")
    precision = len(found & covered) / len(found) if found else float("nan")
    return {
        "n_discovered": float(len(found)),
        "n_labels": float(len(scorable)),
        "recall": 100 * recall,
        "precision": 100 * precision,
    }
