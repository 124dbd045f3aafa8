"""Cluster -> Vote -> re-assign (spec 5.2-5.3), and the top candidates each cluster votes for.

Notation: ``N`` images with unit-norm features ``z`` ``(N, D)``, the vocabulary classifier ``W``
``(V, D)``, per-image top-1 names ``t`` ``(N,)``, a partition ``P`` ``(N,)`` into ``C`` clusters.
The vote matrix ``A`` ``(C, V)`` is sparse: ``A[c, v]`` is the fraction of cluster ``c`` whose top-1
name is ``v``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from s3a.classify import zero_shot
from s3a.config import Vote

log = logging.getLogger(__name__)


class VoteParams(Vote):
    """Settings of the vote iterations (the config block :class:`s3a.config.Vote`).

    Attributes:
        n_iter: vote -> Hungarian -> re-assign iterations (spec: 3).
        n_candidates: names kept per cluster for the LLM step (spec k1 = 3).
    """


@dataclass
class VoteResult:
    """Outcome of :func:`cluster_vote`.

    Attributes:
        partition: ``(N,)`` the partition entering the last iteration (``P_2`` for 3 iterations).
        votes: ``(C, V)`` sparse vote matrix of that partition (``A_2``).
        labels: ``(N,)`` vocabulary index each image holds after the last re-assignment.
        final_partition: ``(N,)`` the partition after the last re-assignment.
    """

    partition: np.ndarray
    votes: sp.csr_matrix
    labels: np.ndarray
    final_partition: np.ndarray


def vote_matrix(partition: np.ndarray, names: np.ndarray, n_names: int) -> sp.csr_matrix:
    """Sparse ``(C, V)`` matrix of vote fractions; ``C = partition.max() + 1``, rows sum to 1."""
    partition = np.asarray(partition, dtype=np.int64)
    n_clusters = int(partition.max()) + 1 if len(partition) else 0
    counts = sp.coo_matrix(
        (np.ones(len(partition)), (partition, np.asarray(names, dtype=np.int64))), shape=(n_clusters, n_names)
    ).tocsr()
    counts.sum_duplicates()
    sizes = np.asarray(counts.sum(axis=1)).ravel()
    return sp.diags(1.0 / np.maximum(sizes, 1)) @ counts


def hungarian_names(scores: sp.spmatrix) -> np.ndarray:
    """One distinct name per row maximising the total score (rectangular Hungarian, spec 5.2).

    Only columns with a non-zero score take part, padded with the lowest-index unscored names
    when there are fewer of them than rows (a row left without a scored name gets one of those,
    as the full ``C x V`` assignment would).

    Args:
        scores: ``(C, V)`` non-negative, ``C <= V``.

    Returns:
        ``(C,)`` distinct column indices.
    """
    scores = sp.csr_matrix(scores)
    n_rows, n_cols = scores.shape
    if n_rows > n_cols:
        raise ValueError(f"cannot give {n_rows} clusters distinct names from {n_cols}")
    used = np.unique(scores.indices[scores.data > 0])
    if len(used) < n_rows:
        spare = np.setdiff1d(np.arange(n_cols), used)[: n_rows - len(used)]
        used = np.concatenate([used, spare])
    dense = scores[:, used].toarray()
    rows, cols = linear_sum_assignment(dense, maximize=True)
    names = np.empty(n_rows, dtype=np.int64)
    names[rows] = used[cols]
    return names


def reassign(
    features: np.ndarray, classifier: np.ndarray, selected: np.ndarray, device: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Re-partition images by their most probable name among ``selected`` (spec 5.3 step 2).

    Returns:
        ``(partition, labels)``: ``(N,)`` clusters renumbered ``0..C'-1`` in order of the selected
        name, and ``(N,)`` the chosen vocabulary indices.
    """
    labels, _ = zero_shot(features, classifier, candidates=selected, device=device)
    _, partition = np.unique(labels, return_inverse=True)
    return partition.astype(np.int64), labels


def cluster_vote(
    features: np.ndarray,
    classifier: np.ndarray,
    partition: np.ndarray,
    params: VoteParams = VoteParams(),
    *,
    top1: np.ndarray,
    device: str | None = None,
) -> VoteResult:
    """``params.n_iter`` iterations of vote -> Hungarian names -> restricted re-assignment.

    The full-vocabulary top-1 is an input, not recomputed here: the pipeline has it from
    ``zero_shot`` (``pred_vocab_index``, see :func:`top1_rows`), the self-training loop from its
    own teacher pass. Each iteration then scores the images against the ``C`` selected names only:
    ``O(N C D)`` time and ``O(chunk C)`` memory, never an ``N x V`` matrix.

    Args:
        features: ``(N, D)`` unit-norm image features.
        classifier: ``(V, D)`` unit-norm vocabulary classifier.
        partition: ``(N,)`` initial partition (k-means, or the offline one during self-training).
        top1: ``(N,)`` each image's top-1 name over the whole vocabulary, as a row of ``classifier``.
    """
    n_names = len(classifier)
    top1 = np.asarray(top1, dtype=np.int64)
    if top1.shape != (len(features),):
        raise ValueError(f"top1 must hold one name per image, shape ({len(features)},), got {top1.shape}")
    if len(top1) and (top1.min() < 0 or top1.max() >= n_names):
        raise ValueError(f"top1 holds names outside the classifier's rows 0..{n_names - 1}")
    current = np.asarray(partition, dtype=np.int64)
    for it in range(params.n_iter):
        votes = vote_matrix(current, top1, n_names)
        selected = hungarian_names(votes)
        entering = current
        current, labels = reassign(features, classifier, selected, device)
        log.info("vote iteration %d: %d clusters -> %d names kept", it + 1, votes.shape[0], current.max() + 1)
    return VoteResult(partition=entering, votes=votes, labels=labels, final_partition=current)


def top1_rows(
    image_ids: np.ndarray, zeroshot: pd.DataFrame, vocab_ids: np.ndarray, source: str = "zero_shot table"
) -> np.ndarray:
    """The ``zero_shot`` top-1 of ``image_ids`` as classifier rows, for :func:`cluster_vote`.

    Args:
        image_ids: ``(N,)`` the images, in the order of the features.
        zeroshot: the ``zero_shot`` table (``image_id``, ``pred_vocab_index``) of their split.
        vocab_ids: ``(V,)`` the ``vocab_index`` of each classifier row.
        source: names the table in error messages.

    Returns:
        ``(N,)`` int64 row of ``vocab_ids`` holding each image's predicted ``vocab_index``.

    Raises:
        ValueError: an image without a prediction, or a prediction outside the classifier (the table
            comes from another run or vocabulary: rerun ``zero_shot``).
    """
    pred = zeroshot.set_index("image_id")["pred_vocab_index"]
    missing = ~np.isin(image_ids, pred.index.to_numpy())
    if missing.any():
        raise ValueError(
            f"{source}: {int(missing.sum())} of {len(image_ids)} images have no top-1 (first image_id "
            f"{image_ids[missing][0]}); rerun zero_shot for this split"
        )
    vocab = pred.loc[image_ids].to_numpy().astype(np.int64)
    order = np.argsort(vocab_ids, kind="stable")
    pos = np.searchsorted(vocab_ids, vocab, sorter=order).clip(max=len(vocab_ids) - 1)
    rows = order[pos]
    bad = vocab_ids[rows] != vocab
    if bad.any():
        raise ValueError(
            f"{source}: predicted vocab_index {vocab[bad][0]} is not in the classifier; "
            "the table comes from another vocabulary, rerun zero_shot"
        )
    return rows


def top_candidates(votes: sp.spmatrix, n_candidates: int = 3) -> pd.DataFrame:
    """The ``n_candidates`` names with the largest vote fraction per cluster (ties: lower index).

    Returns:
        DataFrame with columns cluster, rank (0 = most voted), vocab_index, vote_fraction; a cluster
        with fewer distinct votes has fewer rows.
    """
    votes = sp.csr_matrix(votes)
    rows = []
    for c in range(votes.shape[0]):
        start, end = votes.indptr[c], votes.indptr[c + 1]
        idx, frac = votes.indices[start:end], votes.data[start:end]
        order = np.lexsort((idx, -frac))[:n_candidates]
        rows += [(c, r, int(idx[o]), float(frac[o])) for r, o in enumerate(order)]
    return pd.DataFrame(rows, columns=["cluster", "rank", "vocab_index", "vote_fraction"])


def pad_candidates(
    candidates: pd.DataFrame,
    features: np.ndarray,
    classifier: np.ndarray,
    partition: np.ndarray,
    n_candidates: int = 3,
) -> pd.DataFrame:
    """Give every non-empty cluster exactly ``n_candidates`` names (spec 5.4: always k1 = 3 per prompt).

    A cluster whose images voted for fewer distinct names gets the next names by classifier score:
    the mean logit of its images over the vocabulary, which ranks names as its mean feature ``@ W.T``
    does. Names it already has are skipped; added rows get the next ranks and ``vote_fraction = 0``.

    Args:
        candidates: ``cluster, rank, vocab_index, vote_fraction`` from :func:`top_candidates`.
        features: ``(N, D)`` unit-norm image features; ``partition`` ``(N,)`` the voted partition.
        classifier: ``(V, D)`` vocabulary classifier.

    Returns:
        The candidates with the added rows, sorted by cluster and rank.

    Cost: one ``(S, D) @ (D, V)`` product for the ``S`` clusters that need names (80 MB of float32
    scores for 1,000 such clusters against 20,071 names); memory otherwise linear in ``N``.
    """
    partition = np.asarray(partition, dtype=np.int64)
    n_names = len(classifier)
    have = candidates.groupby("cluster")["vocab_index"].apply(list).to_dict()
    sizes = np.bincount(partition, minlength=int(partition.max()) + 1 if len(partition) else 0)
    short = [c for c in np.flatnonzero(sizes) if len(have.get(int(c), [])) < min(n_candidates, n_names)]
    if not short:
        return candidates.sort_values(["cluster", "rank"], ignore_index=True)
    position = np.full(len(sizes), -1, dtype=np.int64)
    position[short] = np.arange(len(short))
    mask = position[partition] >= 0
    sums = np.zeros((len(short), features.shape[1]), dtype=np.float64)
    np.add.at(sums, position[partition[mask]], np.asarray(features[mask], dtype=np.float64))
    means = (sums / sizes[short][:, None]).astype(np.float32)
    scores = means @ np.asarray(classifier, dtype=np.float32).T
    rows = []
    for i, cluster in enumerate(short):
        taken = list(have.get(int(cluster), []))
        for name in np.argsort(-scores[i], kind="stable"):
            if len(taken) >= n_candidates:
                break
            if int(name) not in taken:
                rows.append((int(cluster), len(taken), int(name), 0.0))
                taken.append(int(name))
    log.info(
        "vote: %d clusters voted for fewer than %d names; padded by classifier score",
        len(short),
        n_candidates,
    )
    added = pd.DataFrame(rows, columns=["cluster", "rank", "vocab_index", "vote_fraction"])
    return pd.concat([candidates, added], ignore_index=True).sort_values(
        ["cluster", "rank"], ignore_index=True
    )
