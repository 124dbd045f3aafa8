import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from s3a.discover.cluster import KMeansParams, kmeans
from s3a.discover.vote import (
    VoteParams,
    cluster_vote,
    hungarian_names,
    reassign,
    top_candidates,
    vote_matrix,
)
from s3a.embed import zero_shot


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


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
    result = cluster_vote(features, classifier, partition, VoteParams(n_iter=3), device="cpu")
    structural_acc = np.mean(result.labels == gt)
    assert 0.3 < zero_shot_acc < 0.8  # the planted noise is real
    assert structural_acc > zero_shot_acc + 0.2
    assert structural_acc > 0.95
    assert len(np.unique(result.labels)) == 8  # Hungarian: distinct names


def test_perfect_partition_and_votes_give_ground_truth():
    features, classifier, gt = planted()
    classifier = classifier.copy()
    classifier[8:16] = unit(np.random.default_rng(5).normal(size=(8, classifier.shape[1])))  # no confusers
    result = cluster_vote(features, classifier, gt.copy(), device="cpu")
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
