"""Realign (spec 5.5): LLM descriptions choose among each cluster's candidates -> structural labels.

For cluster ``c`` (images ``I_c`` of the vote partition ``P_2``), every image votes for its ``k2``
most similar description phrases among the cluster's phrases; a candidate's score is the
frequency-weighted count of votes its phrases received. The scores form a sparse ``(C, V)`` matrix,
the Hungarian assignment of :func:`s3a.discover.vote.hungarian_names` gives one distinct name per
cluster, and every image is re-assigned with the base name classifier restricted to those names.
"""

from __future__ import annotations

import logging
from typing import Literal, get_args

import numpy as np
import pandas as pd
import scipy.sparse as sp

from s3a.config import DatasetEntry, Realign
from s3a.discover.vote import hungarian_names, reassign
from s3a.metrics import candidate_recall  # noqa: F401 (re-exported: realign was its home)
from s3a.models import ModelSpec
from s3a.vocab import DESCRIPTION_SETS, description_templates, name_to_index

log = logging.getLogger(__name__)

WEIGHTINGS = get_args(Realign.model_fields["weighting"].annotation)


class RealignParams(Realign):
    """Settings of the realign step: the config block :class:`s3a.config.Realign` and the dataset's
    description template set.

    Attributes:
        top_k_phrases: phrases each image votes for (spec k2 = 3).
        weighting: ``per_key`` normalises the LLM phrase counts within each candidate;
            ``as_official`` additionally divides a candidate's weights by ``1 + the raw counts of the
            cluster's other candidates``, as the official code does (spec 5.5 step 2).
        templates: official description template set (:data:`s3a.vocab.DESCRIPTION_SETS`) that embeds
            each ``(name, phrase)`` pair; each dataset has its own (spec 5.4, section 16).
        template_style: ``official`` (the strings verbatim, typos included) or ``clean`` (typos fixed).
    """

    templates: Literal[DESCRIPTION_SETS] = DatasetEntry.model_fields["description_templates"].default  # type: ignore[valid-type]

    @property
    def description_templates(self) -> tuple[str, ...]:
        """The template strings of :attr:`templates` in :attr:`template_style`."""
        return description_templates(self.templates, self.template_style)


def phrase_weights(keys: np.ndarray, counts: np.ndarray, weighting: str) -> np.ndarray:
    """Weight of each phrase from its LLM count (spec 5.5 step 2).

    Args:
        keys: ``(P,)`` candidate id of each phrase.
        counts: ``(P,)`` occurrences of each phrase across the LLM repeats.
    """
    keys = np.asarray(keys)
    counts = np.asarray(counts, dtype=np.float64)
    _, inverse = np.unique(keys, return_inverse=True)
    per_key_total = np.bincount(inverse, weights=counts)
    weights = counts / per_key_total[inverse]
    if weighting == "as_official":
        weights = weights / (1.0 + counts.sum() - per_key_total[inverse])
    return weights


def cluster_scores(
    features: np.ndarray, phrases: np.ndarray, keys: np.ndarray, counts: np.ndarray, params: RealignParams
) -> dict[int, float]:
    """Score of each candidate of one cluster.

    Args:
        features: ``(n, D)`` unit-norm features of the cluster's images.
        phrases: ``(P, D)`` unit-norm phrase embeddings of the cluster's candidates.
        keys: ``(P,)`` candidate (vocabulary index) of each phrase.
        counts: ``(P,)`` LLM counts of each phrase.

    Returns:
        candidate -> score (every candidate that has a phrase).
    """
    k = min(params.top_k_phrases, len(phrases))
    sims = features @ phrases.T
    top = (
        np.argpartition(-sims, k - 1, axis=1)[:, :k]
        if k < len(phrases)
        else np.tile(np.arange(k), (len(sims), 1))
    )
    hits = np.bincount(top.ravel(), minlength=len(phrases)).astype(np.float64)
    contribution = phrase_weights(keys, counts, params.weighting) * hits
    return {int(key): float(contribution[keys == key].sum()) for key in np.unique(keys)}


def score_matrix(
    features: np.ndarray,
    partition: np.ndarray,
    candidates: pd.DataFrame,
    descriptions: pd.DataFrame,
    phrase_embeddings: np.ndarray,
    n_names: int,
    params: RealignParams,
) -> sp.csr_matrix:
    """The sparse ``(C, V)`` candidate-score matrix ``B`` of spec 5.5 step 3.

    Args:
        features: ``(N, D)`` image features; ``partition`` ``(N,)`` the vote partition ``P_2``.
        candidates: cluster, rank, vocab_index, vote_fraction.
        descriptions: cluster, vocab_index, phrase, count; row ``j`` is embedded as
            ``phrase_embeddings[j]`` ``(P, D)``.

    A cluster none of whose candidates has a phrase keeps its vote fractions as scores.
    """
    n_clusters = int(partition.max()) + 1
    rows, cols, vals = [], [], []
    members = pd.Series(np.arange(len(partition))).groupby(partition).indices
    by_cluster = descriptions.reset_index(drop=True).groupby("cluster").indices
    for c, group in candidates.groupby("cluster"):
        scores = dict(zip(group.vocab_index.astype(int), group.vote_fraction.astype(float), strict=True))
        idx = by_cluster.get(c)
        if idx is not None and c in members:
            keys = descriptions.vocab_index.to_numpy()[idx]
            counts = descriptions["count"].to_numpy()[idx]
            scores = cluster_scores(features[members[c]], phrase_embeddings[idx], keys, counts, params)
        for name, score in scores.items():
            rows.append(c)
            cols.append(name)
            vals.append(score)
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_clusters, n_names))


def realign_labels(
    image_ids: np.ndarray,
    features: np.ndarray,
    classifier: np.ndarray,
    partition: np.ndarray,
    candidates: pd.DataFrame,
    descriptions: pd.DataFrame,
    phrase_embeddings: np.ndarray,
    params: RealignParams = RealignParams(),
    device: str | None = None,
) -> pd.DataFrame:
    """Structural labels: Hungarian over the candidate scores, then restricted re-assignment.

    Returns:
        DataFrame with columns image_id, vocab_index (structural label), cluster (``0..C'-1``).
    """
    scores = score_matrix(
        features, partition, candidates, descriptions, phrase_embeddings, len(classifier), params
    )
    selected = hungarian_names(scores)
    changed = int(np.sum(selected != _top_candidate(candidates, len(selected))))
    log.info(
        "realign: %d clusters, %d changed their name from the most voted candidate", len(selected), changed
    )
    clusters, labels = reassign(features, classifier, selected, device)
    return pd.DataFrame(
        {"image_id": np.asarray(image_ids, np.int64), "vocab_index": labels, "cluster": clusters}
    )


def structural_labels(
    image_ids: np.ndarray,
    features: np.ndarray,
    classifier: np.ndarray,
    partition: pd.DataFrame,
    candidates: pd.DataFrame,
    descriptions: pd.DataFrame,
    vocabulary: pd.DataFrame,
    model: ModelSpec,
    params: RealignParams = RealignParams(),
) -> pd.DataFrame:
    """The realign step from its tables (rule realign_labels): embed the description phrases with
    ``model``, then :func:`realign_labels`.

    Args:
        image_ids: ``(N,)`` ids of ``features`` ``(N, D)`` (unit-norm image embeddings).
        classifier: ``(V, D)`` the vocabulary's text classifier, row ``i`` for vocab_index ``i``.
        partition: image_id, cluster: the vote partition ``P_2`` (every id of ``image_ids``).
        candidates: cluster, rank, vocab_index, vote_fraction.
        descriptions: cluster, name, phrase, count (as :func:`s3a.discover.describe.describe_candidates`
            writes them); names are looked up in ``vocabulary`` (vocab_index, name).
        model: the CLIP model that embeds each ``(name, phrase)`` in the description templates of
            ``params``.

    Returns:
        As :func:`realign_labels`. Cost: ``P x T`` prompts through the text tower (P phrases, about
        C x 3 candidates x 5 phrases, T templates) and one pass over the ``N`` images per cluster.
    """
    from s3a.embed import text_classifier  # noqa: PLC0415 - PIL and torchvision only when a model runs
    from s3a.models import load_clip  # noqa: PLC0415

    clusters = partition.set_index("image_id").cluster.loc[image_ids].to_numpy()
    descriptions = descriptions.assign(vocab_index=descriptions.name.map(name_to_index(vocabulary)))
    clip = load_clip(model)
    pairs = list(zip(descriptions.name, descriptions.phrase, strict=True))
    phrases = text_classifier(clip.model, clip.tokenizer, pairs, params.description_templates)
    labels = realign_labels(
        image_ids, features, classifier, clusters, candidates, descriptions, phrases, params
    )
    log.info("structural labels: %d images, %d names", len(labels), labels.vocab_index.nunique())
    return labels


def _top_candidate(candidates: pd.DataFrame, n_clusters: int) -> np.ndarray:
    top = np.full(n_clusters, -1, dtype=np.int64)
    first = candidates[candidates["rank"] == 0]
    top[first.cluster.to_numpy()] = first.vocab_index.to_numpy()
    return top
