"""The realistic zero-shot vocabulary (spec 2.1) and the prompt templates (spec 2.2), as data.

Source. The WordNet synset ids of ImageNet-21K (21,843 ``n########`` ids), the 1,000 ImageNet-1K ids
and, for every one of those synsets, its lemmas and its gloss ship inside the installed ``timm``
package (``timm/data/_info/``), so the vocabulary is built offline without nltk or a WordNet download:

* ``imagenet21k_goog_synsets.txt``        one wnid per line (21,843; the list S3A ships),
* ``imagenet_synsets.txt``                one wnid per line (the 1,000 ImageNet-1K classes),
* ``imagenet_synset_to_lemma.txt``        ``wnid<TAB>lemma, lemma, ...`` (WordNet order, spaces for ``_``),
* ``imagenet_synset_to_definition.txt``   ``wnid<TAB>gloss``.

Names. A synset's vocabulary name is nltk's synset-name head: its first lemma, lower-cased, spaces
back to underscores (``Gordon setter, Gordon`` -> ``gordon_setter``). The vocabulary is the sorted
(Python ``sorted``) set of unique names of the 21K ids union the 1K ids; synsets sharing a name are
merged into one entry that keeps every synset id and gloss in wnid order (``crane``: the bird and the
machine). This gives |V| = 20,071 names, the size in the authors' logs: the 21K list alone gives 20,070
and the one IN-1K id outside it (``n04399382`` teddy bear) adds ``teddy``.

Index order is the order of the sorted names; every dataset label is an index into it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+
    from importlib.resources.abc import Traversable

__all__ = [
    "DESCRIPTION_SETS",
    "TEMPLATES",
    "TEMPLATE_STYLES",
    "build_vocabulary",
    "clean_template",
    "description_templates",
    "fill_templates",
    "head_lemma_name",
    "load_synsets",
    "name_to_index",
    "normalize_name",
    "render_synset_definitions",
    "synset_label",
    "wnid_names",
    "wnid_to_index",
    "wordnet_sense_name",
    "wordnet_sense_names",
]

_INFO_PACKAGE = "timm.data._info"
_IN21K_FILE = "imagenet21k_goog_synsets.txt"
_IN1K_FILE = "imagenet_synsets.txt"
_LEMMA_FILE = "imagenet_synset_to_lemma.txt"
_DEFINITION_FILE = "imagenet_synset_to_definition.txt"

#: Prompt templates by name (spec 2.2). ``imagenet7`` is CLIP's 7-prompt ImageNet ensemble that S3A uses
#: for the frozen text classifier; ``photo`` is the single plain prompt.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "imagenet7": (
        "itap of a {}.",
        "a bad photo of the {}.",
        "a origami {}.",
        "a photo of the large {}.",
        "a {} in a video game.",
        "art of the {}.",
        "a photo of the small {}.",
    ),
    "photo": ("a photo of a {}.",),
}


_DESCRIPTION_FILE = "description_templates.json"
_SENSE_FILE = "wordnet_senses.json"
#: Template styles of the LLM-phrase templates: ``official`` = the strings of the official runs verbatim
#: (typos included), ``clean`` = the same strings with the typos fixed (:func:`clean_template`).
TEMPLATE_STYLES = ("official", "clean")


def _package_json(filename: str) -> dict:
    return json.loads(resources.files("s3a").joinpath(filename).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def _official_description_sets() -> dict[str, tuple[str, ...]]:
    sets = _package_json(_DESCRIPTION_FILE)["sets"]
    return {str(name): tuple(str(t) for t in templates) for name, templates in sets.items()}


def clean_template(template: str) -> str:
    """One official description template with its typos fixed (the ``clean`` style).

    ``a origami`` becomes ``an origami``, runs of spaces collapse, a period stranded before a
    ``, which ...`` clause moves to the end, and every template ends with a period:

    >>> clean_template("a  {1} in a video game., which has {0}")
    'a {1} in a video game, which has {0}.'
    """
    text = " ".join(template.replace("a origami", "an origami").split())
    text = text.replace("., ", ", ")
    return text if text.endswith(".") else text + "."


def description_templates(name: str, style: str = "official") -> tuple[str, ...]:
    """The template set ``name`` that embeds an LLM phrase (spec 5.4 and section 16).

    ``{0}`` is the candidate's vocabulary name, ``{1}`` the phrase. The sets and their names are the
    official ones (``imagenet`` = ImageNet-100, ``sdogs`` = Stanford Dogs, ``make_*`` = BREEDS,
    ``imagenet1k``, ``caltech101``, ``cifar100``); Oxford-IIIT Pet has no official set and uses
    ``imagenet``. They ship as data in ``s3a/description_templates.json``.

    Args:
        name: one of :data:`DESCRIPTION_SETS`.
        style: ``official`` (verbatim, typos included) or ``clean`` (:func:`clean_template`).
    """
    sets = _official_description_sets()
    if name not in sets:
        raise ValueError(f"unknown description template set {name!r}; choose one of {sorted(sets)}")
    if style not in TEMPLATE_STYLES:
        raise ValueError(f"template style must be one of {TEMPLATE_STYLES}, got {style!r}")
    templates = sets[name]
    return templates if style == "official" else tuple(clean_template(t) for t in templates)


#: Names of the official description template sets, in the official order.
DESCRIPTION_SETS: tuple[str, ...] = tuple(_official_description_sets())


def _info_file(filename: str) -> Traversable:
    """Path of one of timm's bundled ``_info`` files.

    Located with ``find_spec`` first, which finds the installed package without importing it (importing
    ``timm.data`` imports torch, seconds for reading a text file); falls back to ``importlib.resources``
    (which imports timm) for unusual installs such as zipped packages.
    """
    spec = importlib.util.find_spec("timm")
    if spec is None:
        raise FileNotFoundError(
            f"timm is not installed; it bundles the synset file {filename!r} the vocabulary is built from "
            "(pip install 'timm>=1.0')"
        )
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / "data" / "_info" / filename
        if candidate.is_file():
            return candidate
    candidate = resources.files(_INFO_PACKAGE).joinpath(filename)
    if not candidate.is_file():
        raise FileNotFoundError(
            f"timm's bundled synset file {filename!r} was not found in {_INFO_PACKAGE}; "
            "install timm>=1.0 (pip install 'timm>=1.0') to build the vocabulary offline"
        )
    return candidate


def _read_info(filename: str) -> list[str]:
    """Non-empty, right-stripped lines of one of timm's bundled ``_info`` files."""
    text = _info_file(filename).read_text(encoding="utf-8")
    return [line.rstrip("\r\n") for line in text.splitlines() if line.strip()]


def _read_mapping(filename: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in _read_info(filename):
        wnid, _, value = line.partition("\t")
        out[wnid.strip()] = value.strip()
    return out


def normalize_name(text: str) -> str:
    """Vocabulary spelling of a free-text name: stripped, lower-case, spaces -> underscores."""
    return "_".join(str(text).strip().lower().split())


def head_lemma_name(lemmas: str) -> str:
    """Vocabulary name of a synset from its comma-separated lemma list (nltk synset-name head).

    >>> head_lemma_name("Gordon setter, Gordon")
    'gordon_setter'
    """
    return normalize_name(lemmas.split(",", 1)[0])


@functools.lru_cache(maxsize=1)
def _synsets() -> pd.DataFrame:
    in21k = [w.strip() for w in _read_info(_IN21K_FILE)]
    in1k = [w.strip() for w in _read_info(_IN1K_FILE)]
    lemmas = _read_mapping(_LEMMA_FILE)
    definitions = _read_mapping(_DEFINITION_FILE)
    wnids = sorted(set(in21k) | set(in1k))
    missing = [w for w in wnids if w not in lemmas]
    if missing:
        raise ValueError(f"{len(missing)} wnids have no lemma in timm's {_LEMMA_FILE}, e.g. {missing[:3]}")
    in21k_set, in1k_set = set(in21k), set(in1k)
    frame = pd.DataFrame(
        {
            "wnid": wnids,
            "name": [head_lemma_name(lemmas[w]) for w in wnids],
            "lemmas": [lemmas[w] for w in wnids],
            "definition": [definitions.get(w, "") for w in wnids],
            "in21k": [w in in21k_set for w in wnids],
            "in1k": [w in in1k_set for w in wnids],
        }
    )
    return frame


def load_synsets() -> pd.DataFrame:
    """Every synset of the ImageNet-21K id list union the ImageNet-1K ids, sorted by wnid.

    Columns: ``wnid`` (str), ``name`` (vocabulary name, see :func:`head_lemma_name`), ``lemmas``
    (the raw comma-separated lemma list), ``definition`` (WordNet gloss), ``in21k`` and ``in1k``
    (bool membership flags). 21,844 rows. The files are parsed once per process; each call returns a
    fresh copy, so callers may modify it.
    """
    return _synsets().copy()


@functools.lru_cache(maxsize=1)
def _wnid_to_name() -> dict[str, str]:
    frame = _synsets()
    return dict(zip(frame["wnid"], frame["name"], strict=True))


def wnid_names(wnids: Sequence[str]) -> list[str]:
    """Vocabulary name of each wnid, in order. An unknown wnid raises ``KeyError`` naming it."""
    table = _wnid_to_name()
    out = []
    for wnid in wnids:
        try:
            out.append(table[wnid])
        except KeyError:
            raise KeyError(
                f"wnid {wnid!r} is not in the ImageNet-21K/1K synset tables bundled with timm"
            ) from None
    return out


def build_vocabulary(extra_wnids: Sequence[str] = ()) -> pd.DataFrame:
    """The vocabulary table (spec 2.1): one row per unique name, sorted by name.

    Parameters
    ----------
    extra_wnids:
        wnids to union in (e.g. the folder listing of a user's ImageNet-1K train split, as the
        official code does). Each must be in the bundled synset tables, otherwise ``ValueError``.
        The bundled 1K ids are always included, so a standard IN-1K listing changes nothing.

    Returns
    -------
    DataFrame with columns ``vocab_index`` (int64, 0..V-1), ``name`` (str, sorted, unique),
    ``synset_ids`` (list[str], every wnid with that name, in wnid order) and ``definitions``
    (list[str], their glosses, aligned with ``synset_ids``). V = 20,071.
    """
    synsets = _synsets()
    extra = [str(w).strip() for w in extra_wnids]
    if extra:
        known = set(synsets["wnid"])
        unknown = sorted({w for w in extra if w not in known})
        if unknown:
            raise ValueError(
                f"{len(unknown)} extra wnid(s) are not in the ImageNet-21K/1K synset tables bundled with "
                f"timm: {unknown[:5]}; pass ImageNet wnids (n########)"
            )
    # Every known extra id is already part of the base set (21K union 1K); the union is kept explicit.
    selected = synsets[synsets["in21k"] | synsets["in1k"] | synsets["wnid"].isin(extra)]
    ids_by_name: dict[str, list[str]] = {}
    defs_by_name: dict[str, list[str]] = {}
    for wnid, name, definition in zip(
        selected["wnid"], selected["name"], selected["definition"], strict=True
    ):
        ids_by_name.setdefault(name, []).append(wnid)  # ``selected`` is in wnid order
        defs_by_name.setdefault(name, []).append(definition)
    names = sorted(ids_by_name)
    vocabulary = pd.DataFrame(
        {
            "name": names,
            "synset_ids": [ids_by_name[n] for n in names],
            "definitions": [defs_by_name[n] for n in names],
        }
    )
    vocabulary.insert(0, "vocab_index", pd.RangeIndex(len(vocabulary), dtype="int64").to_numpy())
    return vocabulary


def synset_label(name: str, index_within_name: int) -> str:
    """``name.n.NN`` label of the ``index_within_name``-th (0-based) synset merged under ``name``.

    Used to render candidates in LLM prompts (spec 5.4): ``synset_label("parrot", 1) == "parrot.n.02"``.
    NN is the 1-based position of the synset within the merged vocabulary entry (wnid order), **not**
    WordNet's sense number (synsets of the same name outside the 21K list are not counted): the
    ``clean`` prompt style. The ``official`` style uses :func:`wordnet_sense_name`.
    """
    if index_within_name < 0:
        raise ValueError(f"index_within_name must be >= 0, got {index_within_name}")
    return f"{name}.n.{index_within_name + 1:02d}"


@functools.lru_cache(maxsize=1)
def _sense_names() -> dict[str, str]:
    return dict(_package_json(_SENSE_FILE)["names"])


def wordnet_sense_name(wnid: str) -> str:
    """WordNet's own synset name of an ImageNet wnid, as nltk gives it (``n03126707`` -> ``crane.n.04``).

    The sense number is WordNet 3.0's (the position of the synset among the noun senses of its first
    lemma), unlike :func:`synset_label`, which numbers the synsets merged under one vocabulary name.
    Read from ``s3a/wordnet_senses.json`` (every wnid of the 21K list and the 1K ids), which
    :func:`wordnet_sense_names` generates from the WordNet 3.0 database files.

    Raises:
        KeyError: the wnid is not in the bundled table (not an ImageNet-21K/1K synset).
    """
    try:
        return _sense_names()[wnid]
    except KeyError:
        raise KeyError(
            f"wnid {wnid!r} has no WordNet sense name in s3a/wordnet_senses.json (only ImageNet-21K/1K "
            "synsets are bundled); use llm.prompt_style 'clean' for other synsets"
        ) from None


def wordnet_sense_names(wordnet_dir: str | Path, wnids: Sequence[str]) -> dict[str, str]:
    """nltk-style synset names of ``wnids`` from the WordNet 3.0 database files in ``wordnet_dir``.

    Reads ``data.noun`` (first lemma of each synset) and ``index.noun`` (the sense order of each
    lemma): the name is ``<first lemma, lower-case>.n.<1-based position of the synset among the
    lemma's senses, two digits>``, which is how nltk names synsets. Used to (re)generate the bundled
    ``s3a/wordnet_senses.json`` (e.g. from Debian's ``wordnet-base``, ``/usr/share/wordnet``).

    Raises:
        KeyError: a wnid is not a WordNet 3.0 noun synset.
    """
    root = Path(wordnet_dir)
    senses: dict[str, list[str]] = {}
    with open(root / "index.noun", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(" "):  # licence header
                continue
            fields = line.split()
            n_pointers = int(fields[3])
            senses[fields[0]] = fields[4 + n_pointers + 2 :]
    wanted = {str(w)[1:]: str(w) for w in wnids}
    first_lemma: dict[str, str] = {}
    with open(root / "data.noun", encoding="utf-8") as handle:
        for line in handle:
            offset = line[:8]
            if offset in wanted:
                first_lemma[offset] = line.split(maxsplit=5)[4].lower()
    out = {}
    for offset, wnid in wanted.items():
        if offset not in first_lemma:
            raise KeyError(f"wnid {wnid!r} is not a noun synset of the WordNet files in {root}")
        lemma = first_lemma[offset]
        out[wnid] = f"{lemma}.n.{senses[lemma].index(offset) + 1:02d}"
    return out


def render_synset_definitions(name: str, definitions: Sequence[str]) -> list[str]:
    """``name.n.NN: definition`` for every synset of one vocabulary entry (spec 5.4 prompt lines)."""
    return [f"{synset_label(name, i)}: {d}" for i, d in enumerate(definitions)]


def fill_templates(names: Sequence[str | tuple[str, ...]], templates: Sequence[str]) -> list[str]:
    """Prompts in names-major order: for each name, every template. Names are used raw (underscores kept).

    An item may be a tuple filling numbered slots, e.g. ``(name, phrase)`` for the description
    templates (``"{1} {0}"``).

    ``fill_templates(["a_b", "c"], ["x {}", "y {}"]) == ["x a_b", "y a_b", "x c", "y c"]``, so the
    prompts of name ``i`` are ``out[i * len(templates):(i + 1) * len(templates)]``.
    """
    if isinstance(templates, str):
        raise TypeError("templates must be a sequence of template strings, not one string")
    return [
        template.format(*name) if isinstance(name, tuple) else template.format(name)
        for name in names
        for template in templates
    ]


def name_to_index(vocabulary: pd.DataFrame) -> dict[str, int]:
    """Vocabulary name -> ``vocab_index``."""
    return {str(n): int(i) for n, i in zip(vocabulary["name"], vocabulary["vocab_index"], strict=True)}


def wnid_to_index(vocabulary: pd.DataFrame) -> dict[str, int]:
    """Every synset id of every entry -> that entry's ``vocab_index``."""
    return {
        str(wnid): int(index)
        for ids, index in zip(vocabulary["synset_ids"], vocabulary["vocab_index"], strict=True)
        for wnid in ids
    }
