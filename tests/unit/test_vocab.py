"""Tests of the offline ImageNet-21K vocabulary and the prompt templates (spec 2.1, 2.2, 5.4)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

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


SPEC = Path(os.environ.get("S3A_SPEC", Path(__file__).resolve().parents[3] / "shared" / "S3A_SPEC.md"))
# sha256 of json.dumps({set name: [template, ...]}) of S3A_SPEC.md section 16, for checkouts without the spec
SECTION_16_SHA256 = "5b3b9f5a19987939fa09bac53d2eba226a5bed2b4a927c867f3b1a25c16e9b75"
SECTION_16_SIZES = {
    "imagenet": 7,
    "sdogs": 21,
    "make_nonliving26": 7,
    "make_living17": 7,
    "make_entity13": 21,
    "make_entity30": 7,
    "imagenet1k": 14,
    "caltech101": 28,
    "cifar100": 14,
}


def section_16_sets(text: str) -> dict[str, list[str]]:
    """The template sets of the spec's section 16 (``* `name` (n):`` then ``  - `template` `` lines)."""
    section = text.split("## 16.", 1)[1].split("\n## ", 1)[0]
    sets: dict[str, list[str]] = {}
    current = None
    for line in section.splitlines():
        if match := re.match(r"^\* `([a-z0-9_]+)` \((\d+)\):$", line):
            current = match.group(1)
            sets[current] = []
            assert int(match.group(2)) >= 1
        elif (match := re.match(r"^  - `(.*)`$", line)) and current is not None:
            sets[current].append(match.group(1))
    return sets


def test_description_templates_are_section_16_verbatim():
    from s3a.vocab import DESCRIPTION_SETS, description_templates

    ours = {name: list(description_templates(name)) for name in DESCRIPTION_SETS}
    assert {name: len(t) for name, t in ours.items()} == SECTION_16_SIZES
    if SPEC.is_file():
        assert ours == section_16_sets(SPEC.read_text(encoding="utf-8"))
    assert hashlib.sha256(json.dumps(ours).encode()).hexdigest() == SECTION_16_SHA256
    # the official typos are kept in the official style
    assert ours["sdogs"][11] == "a  {1} in a video game., which has {0}"
    assert ours["sdogs"][18] == "a {1} in a video game, which is {0}"
    assert ours["imagenet"][:3] == ["itap of a {1} {0}.", "a bad photo of the {1} {0}.", "a origami {1} {0}."]
    assert ours["make_living17"][0] == "itap of a {0} {1}."
    assert ours["caltech101"][-1] == "a photo of the small {0}, which is {1}."
    # Stanford Dogs and Caltech-101 are not the same set (today's main had one rule for both)
    assert ours["sdogs"] != ours["caltech101"][: len(ours["sdogs"])]


def test_clean_description_templates_fix_the_typos_only():
    from s3a.vocab import DESCRIPTION_SETS, clean_template, description_templates, fill_templates

    clean = description_templates("sdogs", "clean")
    assert clean[2] == "an origami {0} {1}."
    assert clean[11] == "a {1} in a video game, which has {0}."
    assert clean[18] == "a {1} in a video game, which is {0}."
    for name in DESCRIPTION_SETS:
        official, fixed = description_templates(name), description_templates(name, "clean")
        assert len(fixed) == len(official)
        assert all("a origami" not in t and "  " not in t and t.endswith(".") for t in fixed)
        changed = [(o, f) for o, f in zip(official, fixed, strict=True) if o != f]
        assert all(
            "origami" in o
            or o in {"a  {1} in a video game., which has {0}", "a {1} in a video game, which is {0}"}
            for o, _ in changed
        )
    assert clean_template("art of the {1} {0}.") == "art of the {1} {0}."
    assert (
        fill_templates([("crane", "long legs")], description_templates("imagenet"))[0]
        == "itap of a long legs crane."
    )
    with pytest.raises(ValueError, match="unknown description template set"):
        description_templates("describe_both")
    with pytest.raises(ValueError, match="style"):
        description_templates("imagenet", "tidy")


def test_wordnet_sense_names_are_wordnets_own():
    from s3a.vocab import load_synsets, wordnet_sense_name

    assert wordnet_sense_name("n03126707") == "crane.n.04"  # the machine
    assert wordnet_sense_name("n02012849") == "crane.n.05"  # the bird
    assert wordnet_sense_name("n01816887") == "parrot.n.01"
    assert wordnet_sense_name("n10401331") == "parrot.n.02"
    synsets = load_synsets()
    names = [wordnet_sense_name(w) for w in synsets["wnid"]]
    # every bundled synset has a name, its head is the vocabulary name, and no two synsets share one
    assert [n.rsplit(".n.", 1)[0] for n in names] == list(synsets["name"])
    assert len(set(names)) == len(names) == 21844
    with pytest.raises(KeyError, match="n99999999"):
        wordnet_sense_name("n99999999")


WORDNET_DIR = Path("/usr/share/wordnet")


@pytest.mark.skipif(not (WORDNET_DIR / "index.noun").is_file(), reason="WordNet 3.0 files not installed")
def test_bundled_sense_table_regenerates_from_wordnet():
    from s3a.vocab import load_synsets, wordnet_sense_name, wordnet_sense_names

    wnids = list(load_synsets()["wnid"])
    assert wordnet_sense_names(WORDNET_DIR, wnids) == {w: wordnet_sense_name(w) for w in wnids}
