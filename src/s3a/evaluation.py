"""One stage's metric rows (rule evaluate): the accuracies of :func:`s3a.metrics.stage_metrics` per
split and label set, plus what the structural stage can say about discovery.

Cost at ImageNet-1K: one pass over each split's predictions (1.28M rows for train), the soft scorer's
sentence embeddings of the distinct (predicted, true) name pairs, and for the structural stage one
group-by over the partition; no images x names matrix.
"""

from __future__ import annotations

import logging

import pandas as pd

from s3a.discover.describe import wordnet_fallback_clusters
from s3a.metrics import add_skipped, candidate_recall, gt_vocab_index, stage_metrics
from s3a.soft import SoftScorer

log = logging.getLogger(__name__)


def evaluate_stage(
    manifest: pd.DataFrame,
    vocabulary: pd.DataFrame,
    predictions: dict[str, pd.DataFrame],
    column: str,
    labels: dict[str, str],
    scorer: SoftScorer | None = None,
    discovery: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Metric rows of one stage, labelled and ready to write.

    Args:
        manifest: the dataset manifest (image_id, split, class_index, class_name, wnid).
        vocabulary: vocab_index, name, synset_ids.
        predictions: split -> the stage's predictions (image_id and ``column``), see
            :func:`s3a.metrics.stage_metrics`.
        column: the prediction column holding vocabulary indices.
        labels: leading constant columns, in order (``{"dataset": ..., "model": ..., "stage": ...}``).
        scorer: the soft-accuracy scorer, or None (``soft_acc`` is NaN).
        discovery: for the structural stage, the vote partition (image_id, cluster), the candidates
            and the descriptions: adds ``candidate_recall`` (did the candidates hold each cluster's
            true name) and ``llm_fallback_clusters`` (clusters the LLM could not describe).

    Returns:
        the ``labels`` columns, then split, label_set, n, skipped (images of the split with no
        prediction, i.e. unreadable), the metrics, and the discovery columns when given.
    """
    rows = stage_metrics(manifest, vocabulary, predictions, scorer, column=column)
    if discovery is not None:
        partition, candidates, descriptions = discovery
        gt = gt_vocab_index(list(manifest.wnid), list(manifest.class_name), vocabulary)
        gt = pd.Series(gt, index=manifest.image_id).loc[partition.image_id].to_numpy()
        rows["candidate_recall"] = candidate_recall(partition.cluster.to_numpy(), candidates, gt)
        rows["llm_fallback_clusters"] = len(wordnet_fallback_clusters(descriptions))
    add_skipped(rows, manifest)
    for position, (key, value) in enumerate(labels.items()):
        rows.insert(position, key, value)
    log.info("metrics:\n%s", rows.to_string(index=False))
    return rows
