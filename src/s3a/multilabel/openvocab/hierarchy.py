"""Exact and WordNet-hierarchical evaluation of open-vocabulary scores (spec 8; rule
``evaluate_openvocab``).

:func:`label_subtrees` maps each label of a dataset to vocabulary names — ``exact`` its own
``vocab_index``, ``hierarchical`` every name in its WordNet hyponym subtree (hypernym edges from
:func:`read_wordnet_hypernyms`, WordNet 3.0's ``data.noun``), so ``golden_retriever`` counts for
``dog``; :func:`subtree_scores` takes the max over the subtree; :func:`evaluate_openvocab` gives the
metrics rows (stages ``ov_exact``, ``ov_hier``) and :func:`discovery_metrics` the recall and
precision of the discovered names; :func:`evaluate_openvocab_step` is the rule's step.

Cost: the dense ``(n, C)`` label-score matrices are over the dataset's label set (C <= 1,006),
never the vocabulary; the subtree max reads the long score table once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from s3a.multilabel.data.tables import attach_vocab_index, label_matrix
from s3a.multilabel.metrics import EVAL_COLUMNS, EvalParams, evaluate

__all__ = [
    "DISCOVERY_METRIC_COLUMNS",
    "evaluate_openvocab_step",
    "read_wordnet_hypernyms",
    "label_subtrees",
    "subtree_scores",
    "evaluate_openvocab",
    "discovery_metrics",
]
#: extra columns of the ``ov_*`` rows (NaN without discovery)
DISCOVERY_METRIC_COLUMNS = ("n_discovered", "discovery_recall", "discovery_precision")


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
    (:func:`~s3a.multilabel.data.tables.attach_vocab_index`); the images are every manifest image of the
    split the scores cover (images without a kept name score 0). Exact subtrees, and with
    ``openvocab.hierarchy`` the WordNet ones (``read_wordnet_hypernyms(openvocab.wordnet_dir)``);
    each row (:data:`~s3a.multilabel.metrics.EVAL_COLUMNS`, ``split`` = that split) also holds
    :data:`DISCOVERY_METRIC_COLUMNS` (:func:`~s3a.multilabel.openvocab.hierarchy.discovery_metrics` of the
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
