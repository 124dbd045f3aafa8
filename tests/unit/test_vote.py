import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from helpers import unit

from s3a.discover import vote as vote_mod
from s3a.discover.cluster import KMeansParams, kmeans
from s3a.discover.vote import (
    VoteParams,
    cluster_vote,
    hungarian_names,
    reassign,
    top1_rows,
    top_candidates,
    vote_matrix,
)
from s3a.embed import zero_shot


def planted(n_classes=8, per_class=100, n_names=64, dim=48, seed=0):
    """Clean clusters whose per-image top-1 names are noisy between the true and a confusable name.

    Name ``k`` is class k's true name and name ``n_classes + k`` its confuser; images of class k lie
    between the two (nearer the true name), so their top-1 often flips to the confuser while the
    true name keeps the majority, and classes stay well apart.
    """
    rng = np.random.default_rng(seed)
    classifier = unit(rng.normal(size=(n_names, dim)))
    for k in range(n_classes):
        classifier[n_classes + k] = unit(classifier[k] + 0.35 * unit(rng.normal(size=dim)))
    gt = np.repeat(np.arange(n_classes), per_class)
    centre = classifier[:n_classes] + 0.6 * classifier[n_classes : 2 * n_classes]
    features = unit(centre[gt] + 0.12 * rng.normal(size=(len(gt), dim)))
    return features.astype(np.float32), classifier.astype(np.float32), gt


def test_vote_matrix_fractions():
    votes = vote_matrix(np.array([0, 0, 0, 1, 1]), np.array([4, 4, 2, 2, 3]), 6)
    assert votes.shape == (2, 6)
    np.testing.assert_allclose(votes.toarray()[0], [0, 0, 1 / 3, 0, 2 / 3, 0])
    np.testing.assert_allclose(votes.toarray()[1], [0, 0, 0.5, 0.5, 0, 0])


def test_hungarian_gives_distinct_names_maximising_votes():
    # both clusters prefer name 2; the assignment gives it to cluster 0 (0.9 + 0.4 > 0.6 + 0.5)
    scores = sp.csr_matrix(np.array([[0, 0, 0.9, 0.1, 0], [0, 0, 0.6, 0.4, 0]]))
    assert hungarian_names(scores).tolist() == [2, 3]
    # more clusters than voted names: the extra cluster still gets a distinct (unvoted) name
    names = hungarian_names(sp.csr_matrix(np.array([[0, 1.0, 0], [0, 1.0, 0], [0, 1.0, 0]])))
    assert sorted(names.tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="distinct names"):
        hungarian_names(sp.csr_matrix(np.ones((3, 2))))


def test_reassign_restricts_to_selected_names_and_renumbers():
    classifier = np.eye(4, dtype=np.float32)
    features = unit(np.array([[1, 0.9, 0, 0], [0, 1, 0, 0.2], [0, 0, 0, 1]], dtype=np.float32))
    partition, labels = reassign(features, classifier, np.array([3, 0]), device="cpu")
    assert labels.tolist() == [0, 3, 3]
    assert partition.tolist() == [0, 1, 1]


def test_structural_labels_beat_per_image_zero_shot():
    features, classifier, gt = planted()
    top1, _ = zero_shot(features, classifier, device="cpu")
    zero_shot_acc = np.mean(top1 == gt)
    partition = kmeans(features, 8, KMeansParams(n_init=3, backend="torch", device="cpu")).labels
    result = cluster_vote(features, classifier, partition, VoteParams(n_iter=3), top1=top1, device="cpu")
    structural_acc = np.mean(result.labels == gt)
    assert 0.3 < zero_shot_acc < 0.8  # the planted noise is real
    assert structural_acc > zero_shot_acc + 0.2
    assert structural_acc > 0.95
    assert len(np.unique(result.labels)) == 8  # Hungarian: distinct names


def test_perfect_partition_and_votes_give_ground_truth():
    features, classifier, gt = planted()
    classifier = classifier.copy()
    classifier[8:16] = unit(np.random.default_rng(5).normal(size=(8, classifier.shape[1])))  # no confusers
    top1, _ = zero_shot(features, classifier, device="cpu")
    result = cluster_vote(features, classifier, gt.copy(), top1=top1, device="cpu")
    np.testing.assert_array_equal(result.labels, gt)


def test_top_candidates_ranked_by_vote():
    votes = vote_matrix(np.array([0, 0, 0, 0, 1]), np.array([5, 5, 1, 3, 2]), 6)
    table = top_candidates(votes, 2)
    assert table.to_dict("list") == {
        "cluster": [0, 0, 1],
        "rank": [0, 1, 0],
        "vocab_index": [5, 1, 2],
        "vote_fraction": [0.5, 0.25, 1.0],
    }
    assert isinstance(table, pd.DataFrame)


def test_params_validation():
    with pytest.raises(ValueError, match="n_iter"):
        VoteParams(n_iter=0)


def test_pad_candidates_gives_every_cluster_three_names_by_classifier_score():
    from s3a.discover.vote import pad_candidates

    eye = np.eye(4, dtype=np.float32)
    classifier = np.concatenate([eye, -eye[:2]])  # names 4 and 5 point away from every image
    # cluster 0: all images on name 0 (one vote); cluster 1: two names voted; cluster 2: three
    features = unit(
        np.array([[1, 0.3, 0.1, 0], [1, 0.3, 0.1, 0], [0, 1, 0, 0], [0, 0, 1, 0.5], [0, 0, 0, 1]])
    )
    partition = np.array([0, 0, 1, 1, 2])
    candidates = pd.DataFrame(
        {
            "cluster": [0, 1, 1, 2, 2, 2],
            "rank": [0, 0, 1, 0, 1, 2],
            "vocab_index": [0, 1, 2, 3, 4, 5],
            "vote_fraction": [1.0, 0.5, 0.5, 0.4, 0.3, 0.3],
        }
    )
    padded = pad_candidates(candidates, features.astype(np.float32), classifier, partition, 3)
    assert padded.groupby("cluster").size().tolist() == [3, 3, 3]
    zero = padded[padded.cluster == 0]
    # the mean feature of cluster 0 scores name 1 then name 2 highest after its own name 0
    assert zero.vocab_index.tolist() == [0, 1, 2] and zero["rank"].tolist() == [0, 1, 2]
    assert zero.vote_fraction.tolist() == [1.0, 0.0, 0.0]
    one = padded[padded.cluster == 1]
    assert one.vocab_index.tolist()[:2] == [1, 2] and one.vocab_index.iloc[2] == 3
    pd.testing.assert_frame_equal(
        padded[padded.cluster == 2].reset_index(drop=True), candidates.iloc[3:].reset_index(drop=True)
    )
    # nothing to pad: unchanged
    pd.testing.assert_frame_equal(pad_candidates(padded, features, classifier, partition, 3), padded)


# ---------------------------------------------------------------------------------------------------
# the vote reads the zero_shot top-1 instead of recomputing it


def spy_zero_shot(monkeypatch):
    """Record every classifier scoring the vote module does; None = the whole vocabulary."""
    calls = []
    real = vote_mod.zero_shot

    def spy(features, classifier, candidates=None, **kwargs):
        calls.append(None if candidates is None else len(candidates))
        return real(features, classifier, candidates=candidates, **kwargs)

    monkeypatch.setattr(vote_mod, "zero_shot", spy)
    return calls


def test_vote_uses_the_given_top1_and_never_scores_the_whole_vocabulary(monkeypatch):
    features, classifier, gt = planted()
    calls = spy_zero_shot(monkeypatch)
    given = 40 + gt  # names no image is near: only the given top-1 can make a cluster vote for them
    result = cluster_vote(features, classifier, gt.copy(), VoteParams(n_iter=1), top1=given, device="cpu")
    table = top_candidates(result.votes, 1)
    assert table.vocab_index.tolist() == [40 + c for c in range(8)]
    assert set(result.labels.tolist()) <= set(range(40, 48))  # re-assigned among the selected names only
    assert calls == [8]  # one restricted scoring; no (N, V) top-1 pass
    with pytest.raises(ValueError, match="one name per image"):
        cluster_vote(features, classifier, gt, top1=given[:5])
    with pytest.raises(ValueError, match="outside"):
        cluster_vote(features, classifier, gt, top1=given + 100)


def test_top1_rows_maps_vocab_index_to_classifier_rows():
    zs = pd.DataFrame({"image_id": [7, 3, 5], "pred_vocab_index": [12, 10, 11]})
    rows = top1_rows(np.array([3, 5, 7]), zs, np.array([11, 10, 12]))
    assert rows.tolist() == [1, 0, 2]
    with pytest.raises(ValueError, match="no top-1"):
        top1_rows(np.array([3, 4]), zs, np.array([10, 11, 12]))
    with pytest.raises(ValueError, match="not in the classifier"):
        top1_rows(np.array([3]), zs, np.array([11, 12]))


def test_vote_candidates_adapter_reads_the_zero_shot_top1(tmp_path, monkeypatch):
    from s3a.io import write_embeddings, write_table

    features, classifier, gt = planted()
    ids = np.arange(len(gt)) + 1000
    write_embeddings(ids, features, tmp_path / "embed.parquet")
    vocab_ids = np.arange(len(classifier))
    write_embeddings(vocab_ids, classifier, tmp_path / "cls.parquet", id_column="vocab_index")
    write_table(pd.DataFrame({"image_id": ids, "cluster": gt}), tmp_path / "clusters.parquet")
    # the zero_shot table, rows shuffled; its top-1 names are planted so that only it can produce them
    order = np.random.default_rng(0).permutation(len(ids))
    zs = pd.DataFrame({"image_id": ids[order], "pred_vocab_index": 50 + gt[order], "score": 0.0})
    write_table(zs, tmp_path / "zeroshot.parquet")
    calls = spy_zero_shot(monkeypatch)
    smk = SimpleNamespace(
        input=SimpleNamespace(
            embeddings=str(tmp_path / "embed.parquet"),
            classifier=str(tmp_path / "cls.parquet"),
            clusters=str(tmp_path / "clusters.parquet"),
            zeroshot=str(tmp_path / "zeroshot.parquet"),
        ),
        output=SimpleNamespace(
            candidates=str(tmp_path / "candidates.parquet"), partition=str(tmp_path / "partition.parquet")
        ),
        params=SimpleNamespace(vote={"n_iter": 1, "n_candidates": 2}),
        log=[str(tmp_path / "log.txt")],
    )
    script = Path(__file__).resolve().parents[2] / "workflow" / "scripts" / "vote_candidates.py"
    runpy.run_path(str(script), run_name="adapter")["main"](smk)
    cand = pd.read_parquet(tmp_path / "candidates.parquet")
    assert cand[cand["rank"] == 0].sort_values("cluster").vocab_index.tolist() == [50 + c for c in range(8)]
    assert None not in calls  # the whole-vocabulary top-1 was read, not recomputed
