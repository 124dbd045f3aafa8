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
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+
    from importlib.resources.abc import Traversable

__all__ = [
    "TEMPLATES",
    "build_vocabulary",
    "fill_templates",
    "head_lemma_name",
    "load_synsets",
    "name_to_index",
    "normalize_name",
    "render_synset_definitions",
    "synset_label",
    "wnid_names",
    "wnid_to_index",
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


def _slots(order: str) -> tuple[str, ...]:
    return tuple(t.replace("{}", order) for t in TEMPLATES["imagenet7"])


#: Templates of the LLM descriptions (spec 5.4): ``{0}`` = candidate name, ``{1}`` = descriptive phrase.
#: The official ``templates_small.json`` is not public; these are built from ``imagenet7`` following the
#: spec's description of each set [inferred]: phrase before name (ImageNet-100, Entity30), name before
#: phrase (Living17, Nonliving26), both orders (ImageNet-1K, CIFAR-100), plus "a type of" (Entity13)
#: and "which is" (Caltech-101).
TEMPLATES.update(
    {
        "describe_phrase_name": _slots("{1} {0}"),
        "describe_name_phrase": _slots("{0} {1}"),
        "describe_both": _slots("{1} {0}") + _slots("{0} {1}"),
        "describe_type_of": _slots("{1} {0}") + _slots("{0} {1}") + _slots("{0}, a type of {1}"),
        "describe_which_is": _slots("{1} {0}")
        + _slots("{0} {1}")
        + _slots("{0}, a type of {1}")
        + _slots("{0}, which is {1}"),
    }
)


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
    WordNet's sense number: synsets of the same name outside the 21K list are not counted.
    """
    if index_within_name < 0:
        raise ValueError(f"index_within_name must be >= 0, got {index_within_name}")
    return f"{name}.n.{index_within_name + 1:02d}"


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
