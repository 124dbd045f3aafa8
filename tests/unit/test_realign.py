import numpy as np
import pandas as pd
import pytest
from helpers import unit

from s3a.discover.realign import (
    RealignParams,
    candidate_recall,
    phrase_weights,
    realign_labels,
    score_matrix,
)
from s3a.discover.vote import cluster_vote, top_candidates
from s3a.embed import zero_shot
from s3a.metrics import label_diagnostics


def confused_world(n_classes=6, per_class=80, n_names=40, dim=64, seed=0):
    """Clusters whose vote majority goes to a confuser; only descriptions reveal the true name.

    Images of class k lean towards the confuser name ``n_classes + k`` and carry a visual attribute
    ``a_k``; the true name's LLM phrases embed near ``a_k``, the confuser's phrases elsewhere.
    """
    rng = np.random.default_rng(seed)
    classifier = unit(rng.normal(size=(n_names, dim)))
    for k in range(n_classes):
        classifier[n_classes + k] = unit(classifier[k] + 0.35 * unit(rng.normal(size=dim)))
    attribute = unit(rng.normal(size=(n_classes, dim)))
    gt = np.repeat(np.arange(n_classes), per_class)
    centre = 0.6 * classifier[:n_classes] + classifier[n_classes : 2 * n_classes] + 0.5 * attribute
    features = unit(centre[gt] + 0.1 * rng.normal(size=(len(gt), dim))).astype(np.float32)
    rows, vectors = [], []
    for k in range(n_classes):
        for j in range(2):
            rows.append((k, k, f"true phrase {j}", 3 - j))
            vectors.append(unit(attribute[k] + 0.2 * rng.normal(size=dim)))
            rows.append((k, n_classes + k, f"confuser phrase {j}", 3))
            vectors.append(unit(rng.normal(size=dim)))
    descriptions = pd.DataFrame(rows, columns=["cluster", "vocab_index", "phrase", "count"])
    return features, classifier.astype(np.float32), gt, descriptions, np.array(vectors, np.float32)


def test_phrase_weights_by_hand():
    keys, counts = np.array([1, 1, 2]), np.array([2, 1, 3])
    np.testing.assert_allclose(phrase_weights(keys, counts, "per_key"), [2 / 3, 1 / 3, 1.0])
    np.testing.assert_allclose(phrase_weights(keys, counts, "as_official"), [1 / 6, 1 / 12, 1 / 4])


@pytest.mark.parametrize("weighting", ["as_official", "per_key"])
def test_descriptions_fix_clusters_the_vote_got_wrong(weighting):
    features, classifier, gt, descriptions, phrases = confused_world()
    top1, _ = zero_shot(features, classifier, device="cpu")
    vote = cluster_vote(features, classifier, gt.copy(), top1=top1, device="cpu")
    candidates = top_candidates(vote.votes, 3)
    # the clusters of vote.partition are numbered by their voted name; map the planted descriptions
    cluster_of_class = pd.Series(vote.partition).groupby(gt).agg(lambda c: c.mode()[0])
    descriptions = descriptions.assign(cluster=cluster_of_class.loc[descriptions.cluster].to_numpy())
    vote_acc = np.mean(vote.labels == gt)
    labels = realign_labels(
        np.arange(len(gt)) + 100,
        features,
        classifier,
        vote.partition,
        candidates,
        descriptions,
        phrases,
        RealignParams(weighting=weighting),
        device="cpu",
    )
    assert vote_acc < 0.3  # the votes chose the confusers
    assert np.mean(labels.vocab_index.to_numpy() == gt) > 0.95
    assert labels.image_id.tolist()[:2] == [100, 101]
    assert labels.vocab_index.nunique() == 6
    assert candidate_recall(vote.partition, candidates, gt) == 1.0
    assert (
        candidate_recall(vote.partition, candidates[candidates["rank"] == 0], gt) == 0.0
    )  # votes chose confusers
    assert label_diagnostics(labels.vocab_index.to_numpy(), gt)["missing_labels"] == 0


def test_cluster_without_descriptions_keeps_vote_fractions():
    features = unit(np.eye(3, dtype=np.float32))
    candidates = pd.DataFrame(
        {"cluster": [0, 0, 1], "rank": [0, 1, 0], "vocab_index": [4, 2, 1], "vote_fraction": [0.6, 0.4, 1.0]}
    )
    descriptions = pd.DataFrame({"cluster": [1], "vocab_index": [1], "phrase": ["x"], "count": [2]})
    scores = score_matrix(
        features,
        np.array([0, 0, 1]),
        candidates,
        descriptions,
        features[2:3],
        5,
        RealignParams(top_k_phrases=3),
    ).toarray()
    np.testing.assert_allclose(scores[0], [0, 0, 0.4, 0, 0.6])
    assert scores[1, 1] > 0 and scores[1].sum() == scores[1, 1]


def test_params_validation():
    with pytest.raises(ValueError, match="weighting"):
        RealignParams(weighting="sideways")
    with pytest.raises(ValueError, match="top_k_phrases"):
        RealignParams(top_k_phrases=0)


def test_params_pick_the_datasets_official_template_set():
    from s3a.vocab import description_templates

    assert RealignParams().templates == "imagenet" and RealignParams().template_style == "official"
    dogs = RealignParams(templates="sdogs")
    assert dogs.description_templates == description_templates("sdogs")
    assert dogs.description_templates[11] == "a  {1} in a video game., which has {0}"
    clean = RealignParams(templates="sdogs", template_style="clean").description_templates
    assert clean[11] == "a {1} in a video game, which has {0}."
    assert RealignParams(templates="caltech101").description_templates != dogs.description_templates
    with pytest.raises(ValueError, match="templates"):
        RealignParams(templates="describe_both")
    with pytest.raises(ValueError, match="template_style"):
        RealignParams(template_style="tidy")


def described_world(tiny_clip, params):
    """Two clusters whose top-voted candidate is wrong and whose images look like the phrases of
    the right name (embedded by the tiny model); vocabulary rows are not in name order."""
    from s3a.embed import text_classifier

    vocabulary = pd.DataFrame({"vocab_index": [3, 1, 0, 2], "name": ["cat", "dog", "fox", "owl"]})
    descriptions = pd.DataFrame(
        {
            "cluster": [0, 0, 1, 1],
            "name": ["cat", "owl", "fox", "dog"],
            "phrase": ["whiskers", "feathers", "bushy tail", "barks"],
            "count": [2, 2, 2, 2],
        }
    )
    pairs = list(zip(descriptions.name, descriptions.phrase, strict=True))
    phrases = text_classifier(tiny_clip.model, tiny_clip.tokenizer, pairs, params.description_templates)
    rng = np.random.default_rng(0)
    truth = np.repeat([2, 1], 4)  # owl (phrase 1) in cluster 0, dog (phrase 3) in cluster 1
    features = unit(phrases[np.repeat([1, 3], 4)] + 0.01 * rng.normal(size=(8, phrases.shape[1])))
    classifier = unit(rng.normal(size=(4, phrases.shape[1])))
    classifier[2], classifier[1] = unit(features[:4].mean(0)), unit(features[4:].mean(0))
    candidates = pd.DataFrame(
        {
            "cluster": [0, 0, 1, 1],
            "rank": [0, 1, 0, 1],
            "vocab_index": [3, 2, 0, 1],
            "vote_fraction": [0.6, 0.4] * 2,
        }
    )
    # the partition file lists the images in another order than the embeddings
    partition = pd.DataFrame({"image_id": np.arange(8)[::-1] + 20, "cluster": np.repeat([1, 0], 4)})
    data = (
        np.arange(8) + 20,
        features.astype(np.float32),
        classifier.astype(np.float32),
        partition,
        candidates,
    )
    return data, descriptions, vocabulary, phrases, truth


def test_structural_labels_embed_the_descriptions_and_pick_the_described_names(tiny_clip, tiny_checkpoint):
    from s3a.discover.realign import structural_labels
    from s3a.models import TINY_ARCH, ModelSpec

    params = RealignParams(top_k_phrases=1)
    data, descriptions, vocabulary, phrases, truth = described_world(tiny_clip, params)
    labels = structural_labels(
        *data, descriptions, vocabulary, ModelSpec(TINY_ARCH, str(tiny_checkpoint)), params
    )
    assert labels.image_id.tolist() == list(range(20, 28))
    assert labels.vocab_index.tolist() == truth.tolist()  # not the most voted cat and fox
    image_ids, features, classifier, partition, candidates = data
    same = realign_labels(
        image_ids,
        features,
        classifier,
        np.repeat([0, 1], 4),
        candidates,
        descriptions.assign(vocab_index=[3, 2, 0, 1]),
        phrases,
        params,
    )
    pd.testing.assert_frame_equal(labels, same)


def test_realign_labels_adapter(tmp_path, tiny_clip, tiny_checkpoint):
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    from s3a.io import read_table, write_embeddings, write_table
    from s3a.models import TINY_ARCH

    params = RealignParams(top_k_phrases=1)
    data, descriptions, vocabulary, _, truth = described_world(tiny_clip, params)
    image_ids, features, classifier, partition, candidates = data
    paths = {name: str(tmp_path / f"{name}.parquet") for name in ("embeddings", "classifier", "vocabulary")}
    write_embeddings(image_ids, features, paths["embeddings"])
    write_embeddings(np.arange(4), classifier, paths["classifier"], "vocab_index")
    write_table(vocabulary, paths["vocabulary"])
    for name, table in (("partition", partition), ("candidates", candidates), ("descriptions", descriptions)):
        paths[name] = str(tmp_path / f"{name}.parquet")
        write_table(table, paths[name])
    smk = SimpleNamespace(
        input=SimpleNamespace(**paths),
        output=[str(tmp_path / "structural_labels.parquet")],
        params=SimpleNamespace(
            model={"arch": TINY_ARCH, "pretrained": str(tiny_checkpoint)},
            realign={"top_k_phrases": 1, "templates": params.templates},
        ),
        threads=1,
        log=[str(tmp_path / "realign.log")],
    )
    script = Path(__file__).resolve().parents[2] / "workflow" / "scripts" / "realign_labels.py"
    runpy.run_path(str(script), run_name="adapter")["main"](smk)
    assert read_table(smk.output[0]).vocab_index.tolist() == truth.tolist()
    assert "structural labels: 8 images, 2 names" in (tmp_path / "realign.log").read_text()
