"""Open-vocabulary multi-label (MULTILABEL_SPEC 8): per-view top-k, aggregation, discovery and the
exact / WordNet-hierarchical evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s3a.multilabel.aggregate import PseudoParams, aggregate, view_scores
from s3a.multilabel.data.tables import ImageRecord, assemble
from s3a.multilabel.openvocab.discovery import discover_frequency
from s3a.multilabel.openvocab.hierarchy import (
    discovery_metrics,
    evaluate_openvocab,
    label_subtrees,
    read_wordnet_hypernyms,
    subtree_scores,
)
from s3a.multilabel.openvocab.scores import OV_COLUMNS, SCORE_COLUMNS, image_scores, view_topk

# WordNet 3.0 data.noun format: offset lex_filenum ss_type w_cnt(hex) (word lex_id)* p_cnt (ptr)* | gloss
DATA_NOUN = """\
  1 This is a licence header line of the WordNet database files.
02083346 05 n 01 canine 0 001 ~ 02084071 n 0000 | a carnivore
02084071 05 n 02 dog 0 domestic_dog 0 003 @ 02083346 n 0000 #m 07994941 n 0000 ~ 02099029 n 0000 | dog
02099029 05 n 01 retriever 0 001 @ 02084071 n 0000 | a dog that retrieves
02099601 05 n 01 golden_retriever 0 001 @ 02099029 n 0000 | a golden dog
09999999 18 n 01 Lassie 0 001 @i 02084071 n 0000 | a famous dog (an instance)
02121620 05 n 01 feline 0 000 | a cat
02121808 05 n 02 domestic_cat 0 house_cat 0 001 @ 02121620 n 0000 | a cat
"""
VOCAB_NAMES = ["dog", "domestic_cat", "feline", "golden_retriever", "lassie", "retriever"]
VOCAB_WNIDS = ["n02084071", "n02121808", "n02121620", "n02099601", "n09999999", "n02099029"]


@pytest.fixture
def wordnet(tmp_path) -> Path:
    (tmp_path / "data.noun").write_text(DATA_NOUN)
    return tmp_path


@pytest.fixture
def vocabulary() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "vocab_index": np.arange(len(VOCAB_NAMES), dtype=np.int64),
            "name": VOCAB_NAMES,
            "synset_ids": [[w] for w in VOCAB_WNIDS],
        }
    )


@pytest.fixture
def pets():
    """Labels cat (n02121808), dog (n02084071), horse (no wnid, out of vocabulary);
    images 0 {dog}, 1 {cat}, 2 {dog, cat}, 3 {horse}."""
    nan = float("nan")
    objs = {0: (1,), 1: (0,), 2: (0, 1), 3: (2,)}
    records = [ImageRecord(f"/p/{i}.jpg", "test", tuple((c, False, nan) for c in objs[i])) for i in range(4)]
    data = assemble("pets", records, ["cat", "dog", "horse"], wnids=["n02121808", "n02084071", None])
    data.label_set["vocab_index"] = np.array([1, 0, -1], dtype=np.int64)
    return data


def test_read_wordnet_hypernyms(wordnet):
    parents = read_wordnet_hypernyms(wordnet)
    assert parents == {
        "n02084071": ("n02083346",),
        "n02099029": ("n02084071",),
        "n02099601": ("n02099029",),
        "n09999999": ("n02084071",),  # instance hypernym
        "n02121808": ("n02121620",),
    }
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        read_wordnet_hypernyms(wordnet / "nowhere")


def test_hierarchical_evaluation_counts_golden_retriever_for_dog(wordnet, vocabulary, pets):
    exact = label_subtrees(pets.label_set, vocabulary)
    hier = label_subtrees(pets.label_set, vocabulary, read_wordnet_hypernyms(wordnet))
    assert [t.tolist() for t in exact] == [[1], [0], []]
    # dog's subtree: dog, golden_retriever, lassie (instance), retriever; cat's: domestic_cat only
    assert [t.tolist() for t in hier] == [[1], [0, 3, 4, 5], []]
    scores = pd.DataFrame(
        {
            "image_id": [0, 1, 1, 2, 2, 3],
            "vocab_index": [3, 1, 3, 4, 1, 2],  # no image kept the name "dog" itself
            "score": [0.9, 0.8, 0.1, 0.5, 0.3, 0.7],
        }
    )
    ids = np.arange(4)
    np.testing.assert_allclose(
        subtree_scores(scores, ids, hier), [[0, 0.9, 0], [0.8, 0.1, 0], [0.3, 0.5, 0], [0, 0, 0]]
    )
    np.testing.assert_allclose(
        subtree_scores(scores, ids, exact), [[0, 0, 0], [0.8, 0, 0], [0.3, 0, 0], [0, 0, 0]]
    )
    rows = pd.concat(
        [
            evaluate_openvocab(scores, ids, pets.labels, pets.label_set, exact, stage="ov_exact"),
            evaluate_openvocab(scores, ids, pets.labels, pets.label_set, hier, stage="ov_hier"),
        ]
    )
    assert rows["n_labels"].tolist() == [2, 2]  # horse is out of the vocabulary
    ex, hi = rows["map"].tolist()
    # exact: cat AP 1, dog scores all 0 -> AP = prevalence 2/4 ; hierarchical: both 1
    assert ex == pytest.approx(75.0) and hi == pytest.approx(100.0)
    found = discovery_metrics(np.array([3]), exact), discovery_metrics(np.array([3]), hier)
    assert (found[0]["recall"], found[0]["precision"]) == (0.0, 0.0)
    assert (found[1]["recall"], found[1]["precision"]) == (50.0, 100.0)


def test_real_wordnet_dog_subtree():
    if not Path("/usr/share/wordnet/data.noun").is_file():
        pytest.skip("WordNet 3.0 database files are not installed at /usr/share/wordnet")
    from s3a.vocab import build_vocabulary, name_to_index

    vocab = build_vocabulary()
    index = name_to_index(vocab)
    label_set = pd.DataFrame(
        {"label_index": [0], "name": ["dog"], "wnid": ["n02084071"], "vocab_index": [index["dog"]]}
    )
    (dog,) = label_subtrees(label_set, vocab, read_wordnet_hypernyms("/usr/share/wordnet"))
    assert {index["dog"], index["golden_retriever"], index["dalmatian"]} <= set(dog.tolist())
    assert index["tabby"] not in set(dog.tolist())


def _embeddings(seed: int, n: int, m: int, v: int, d: int = 8):
    """Random unit ``(global (n, d), tiles (n, m, d), vocabulary (v, d))``."""
    rng = np.random.default_rng(seed)
    out = [rng.normal(size=shape) for shape in ((n, d), (n, m, d), (v, d))]
    return [(a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32) for a in out]


def test_topk_over_the_whole_vocabulary_equals_the_dense_aggregation():
    n, m, v = 7, 4, 30
    glob, tiles, vocab = _embeddings(0, n, m, v)
    ids = np.arange(100, 100 + n)
    table = view_topk(ids, glob, tiles, vocab, topk=v, temperature=10.0, chunk=3)
    assert list(table.columns) == list(OV_COLUMNS) and len(table) == n * (m + 1) * v
    dense = view_scores(glob, tiles, vocab, PseudoParams(temperature=10.0))
    for params in (
        PseudoParams(),
        PseudoParams(zeta=0.05, lam=0.5),
        PseudoParams(local_reduce="mean", lam=-1),
    ):
        got = image_scores(table, m, params, image_chunk=2)
        assert list(got.columns) == list(SCORE_COLUMNS) and len(got) == n * v
        np.testing.assert_allclose(
            got["score"].to_numpy().reshape(n, v), aggregate(dense, params)[1], atol=1e-6
        )
    shuffled = image_scores(table.sample(frac=1.0, random_state=0), m, image_chunk=3)
    np.testing.assert_allclose(shuffled["score"], image_scores(table, m)["score"], atol=1e-7)


def test_topk_keeps_each_views_best_names():
    n, m, v = 5, 3, 40
    glob, tiles, vocab = _embeddings(1, n, m, v)
    table = view_topk(np.arange(n), glob, tiles, vocab, topk=4)
    dense = view_scores(glob, tiles, vocab)
    g = table[table["view"] == -1]
    np.testing.assert_array_equal(
        g["vocab_index"].to_numpy().reshape(n, 4), np.argsort(-dense.s_global, axis=1, kind="stable")[:, :4]
    )
    np.testing.assert_allclose(
        g["prob"].to_numpy().reshape(n, 4), -np.sort(-dense.s_global, axis=1)[:, :4], atol=1e-6
    )
    assert sorted(table["view"].unique().tolist()) == [-1, 0, 1, 2]
    scores = image_scores(table, m)
    # a name kept by the global view only: S_agg = 0, score = S_g / 2 (ζ = 0, λ = 0)
    only_global = scores[scores["s_agg"] == 0]
    np.testing.assert_allclose(only_global["score"], only_global["s_global"] / 2, atol=1e-7)
    # global view only (no tiles): the score is S_g
    alone = image_scores(view_topk(np.arange(n), glob, None, vocab, topk=4), 0)
    np.testing.assert_allclose(alone["score"], alone["s_global"])


def test_open_vocabulary_scores_near_one_keep_their_ranking():
    # name 0 leads the others by cosine gaps 0.20 (image 0) and 0.25 (image 1): at τ = 100 both
    # probabilities are within 6e-8 of 1 (a float32 tie at 1.0); kept apart through every step
    cos = np.array([[0.30, 0.10, 0.10], [0.35, 0.10, 0.10]])
    glob = np.concatenate([cos, np.sqrt(1 - (cos**2).sum(1, keepdims=True))], axis=1)
    vocab = np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1)
    table = view_topk(np.arange(2), glob, glob[:, None, :], vocab, topk=3)
    assert table["prob"].dtype == np.float64
    scores = image_scores(table, 1)
    top = scores[scores["vocab_index"] == 0].set_index("image_id")
    for column in ("s_global", "s_agg", "score"):
        assert top.loc[1, column] > top.loc[0, column] and top.loc[0, column] < 1.0, top
        np.testing.assert_allclose(1 - top[column].to_numpy(), 2 * np.exp([-20.0, -25.0]), rtol=1e-4)
    got = subtree_scores(scores, np.arange(2), [np.array([0])])
    assert got[1, 0] > got[0, 0]


def test_discover_frequency():
    scores = pd.DataFrame(
        {"image_id": [0, 0, 1, 1, 2], "vocab_index": [5, 7, 5, 9, 7], "score": [0.5, 0.2, 0.4, 0.6, 0.3]}
    )
    top = discover_frequency(scores, 2)
    assert top["vocab_index"].tolist() == [5, 9] and top["rank"].tolist() == [0, 1]
    np.testing.assert_allclose(top["score_sum"], [0.9, 0.6])
    assert top["n_images"].tolist() == [2, 1]
    with pytest.raises(ValueError):
        discover_frequency(scores, 0)
