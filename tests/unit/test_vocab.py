"""Tests of the offline ImageNet-21K vocabulary and the prompt templates (spec 2.1, 2.2, 5.4)."""

from __future__ import annotations

import pytest

from s3a.vocab import (
    TEMPLATES,
    build_vocabulary,
    fill_templates,
    head_lemma_name,
    load_synsets,
    name_to_index,
    render_synset_definitions,
    synset_label,
    wnid_names,
    wnid_to_index,
)


@pytest.fixture(scope="module")
def vocabulary():
    return build_vocabulary()


def test_vocabulary_size_matches_the_authors_logs(vocabulary):
    size = len(vocabulary)
    print(f"vocabulary size V = {size}")
    assert 20_000 <= size <= 20_200
    assert size == 20_071  # the authors' assignment matrices are (C, 20071)
    assert vocabulary["vocab_index"].tolist() == list(range(size))


def test_names_sorted_and_unique(vocabulary):
    names = vocabulary["name"].tolist()
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    assert all(n == n.lower() and " " not in n for n in names)


def test_known_names_present(vocabulary):
    names = set(vocabulary["name"])
    for name in ("golden_retriever", "african_grey", "crane", "gordon_setter", "teddy"):
        assert name in names


def test_shared_names_are_merged_in_wnid_order(vocabulary):
    crane = vocabulary.set_index("name").loc["crane"]
    assert len(crane["synset_ids"]) >= 2
    assert crane["synset_ids"] == sorted(crane["synset_ids"])
    assert len(crane["definitions"]) == len(crane["synset_ids"])
    assert len(set(crane["definitions"])) == len(crane["definitions"])
    assert {"n02012849", "n03126707"} <= set(crane["synset_ids"])  # the bird and the machine
    # every synset of the 21K list union the 1K list appears exactly once
    all_ids = [w for ids in vocabulary["synset_ids"] for w in ids]
    assert len(all_ids) == len(set(all_ids)) == len(load_synsets())


def test_load_synsets_columns_and_copy():
    synsets = load_synsets()
    assert list(synsets.columns[:4]) == ["wnid", "name", "lemmas", "definition"]
    assert synsets["in21k"].sum() == 21_843
    assert synsets["in1k"].sum() == 1_000
    assert synsets.loc[~synsets["in21k"], "wnid"].tolist() == ["n04399382"]  # teddy bear, IN-1K only
    synsets.loc[0, "name"] = "changed"
    assert load_synsets().loc[0, "name"] != "changed"


def test_head_lemma_name():
    assert head_lemma_name("Gordon setter, Gordon") == "gordon_setter"
    assert head_lemma_name("African grey, African gray, Psittacus erithacus") == "african_grey"
    assert head_lemma_name("crane") == "crane"


def test_wnid_names_and_unknown_wnid():
    assert wnid_names(["n02101006"]) == ["gordon_setter"]
    assert wnid_names(["n02012849", "n03126707"]) == ["crane", "crane"]
    with pytest.raises(KeyError, match="n99999999"):
        wnid_names(["n02101006", "n99999999"])


def test_extra_wnids(vocabulary):
    same = build_vocabulary(extra_wnids=["n02101006", "n04399382"])
    assert same["name"].tolist() == vocabulary["name"].tolist()
    with pytest.raises(ValueError, match="n00000001"):
        build_vocabulary(extra_wnids=["n00000001"])


def test_index_maps(vocabulary):
    by_name = name_to_index(vocabulary)
    by_wnid = wnid_to_index(vocabulary)
    assert len(by_name) == len(vocabulary)
    assert by_wnid["n02012849"] == by_wnid["n03126707"] == by_name["crane"]
    assert vocabulary.loc[by_name["golden_retriever"], "name"] == "golden_retriever"


def test_synset_label_and_rendering():
    assert synset_label("parrot", 0) == "parrot.n.01"
    assert synset_label("parrot", 1) == "parrot.n.02"
    assert synset_label("queen", 11) == "queen.n.12"
    with pytest.raises(ValueError):
        synset_label("parrot", -1)
    assert render_synset_definitions("parrot", ["bird", "copycat"]) == [
        "parrot.n.01: bird",
        "parrot.n.02: copycat",
    ]


def test_templates():
    assert len(TEMPLATES["imagenet7"]) == 7
    assert TEMPLATES["imagenet7"][0] == "itap of a {}."
    assert TEMPLATES["imagenet7"][-1] == "a photo of the small {}."
    assert TEMPLATES["photo"] == ("a photo of a {}.",)
    assert all(
        t.count("{}") == 1 for name, ts in TEMPLATES.items() if not name.startswith("describe_") for t in ts
    )


def test_fill_templates_names_major_and_underscores_kept():
    out = fill_templates(["golden_retriever", "crane"], ["itap of a {}.", "art of the {}."])
    assert out == [
        "itap of a golden_retriever.",
        "art of the golden_retriever.",
        "itap of a crane.",
        "art of the crane.",
    ]
    assert len(fill_templates(["a", "b", "c"], TEMPLATES["imagenet7"])) == 21
    with pytest.raises(TypeError):
        fill_templates(["a"], "a photo of a {}.")


def test_description_template_sets():
    from s3a.vocab import TEMPLATES, fill_templates

    sizes = {name: len(TEMPLATES[name]) for name in TEMPLATES if name.startswith("describe_")}
    assert sizes == {
        "describe_phrase_name": 7,
        "describe_name_phrase": 7,
        "describe_both": 14,
        "describe_type_of": 21,
        "describe_which_is": 28,
    }
    assert (
        fill_templates([("crane", "long legs")], TEMPLATES["describe_phrase_name"])[0]
        == "itap of a long legs crane."
    )
    assert (
        fill_templates([("crane", "long legs")], TEMPLATES["describe_name_phrase"])[0]
        == "itap of a crane long legs."
    )
