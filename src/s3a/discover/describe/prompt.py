"""The prompt of the describe step: the concepts of a cluster's candidates and the one-shot
question (spec 5.4)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from s3a.discover.describe.params import PROMPT_STYLES
from s3a.vocab import render_synset_definitions, synset_label, wordnet_sense_name

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- prompt

# The worked example of the one-shot prompt (``clean`` style). Definitions are short paraphrases of the
# WordNet glosses.
_EXAMPLE_DEFINITIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "african_grey",
        ("grey parrot often kept as a pet, with a red tail and a pale face; from central Africa",),
    ),
    (
        "parrot",
        (
            "tropical bird, usually brightly coloured, with a short hooked beak; can imitate sounds",
            "a person who copies the words or actions of others without understanding them",
        ),
    ),
    ("cockatoo", ("crested parrot, white or pale, from Australia and nearby islands",)),
)

_EXAMPLE_ANSWER = (
    "african_grey.n.01: grey parrot; red tail; white mask around the eye; pale yellow eye; "
    "black hooked beak; scalloped grey feathers.\n"
    "parrot.n.01: bright green, red or blue feathers; short hooked beak; perched on a branch; "
    "two toes forward and two back; tropical bird.\n"
    "parrot.n.02: person repeating what someone else says; copying another person's gestures; "
    "people talking face to face.\n"
    "cockatoo.n.01: white or pale plumage; raised crest on the head; large curved grey beak; "
    "bird in a cage."
)

_INSTRUCTION = (
    "Goal: discriminate these visual concepts in a photo. List all possible visual descriptive phrases "
    "for each visual concept, as one line per concept in the format "
    "'{concept name}: {phrases delimited by semicolons}.' with no duplication."
)

# The ``official`` style (spec 5.4): the same one-shot structure in the official wording, the example
# concepts with WordNet's own synset names and glosses, and the example answers of the official prompt.
_OFFICIAL_EXAMPLE: tuple[tuple[str, str], ...] = (
    (
        "african_grey.n.01",
        "commonly domesticated grey parrot with red-and-black tail and white face; "
        "native to equatorial Africa",
    ),
    (
        "parrot.n.01",
        "usually brightly colored zygodactyl tropical birds with short hooked beaks and the ability to "
        "mimic sounds",
    ),
    ("parrot.n.02", "a copycat who does not understand the words or acts being imitated"),
    (
        "cockatoo.n.01",
        "white or light-colored crested parrot of the Australian region; often kept as cage birds",
    ),
)

_OFFICIAL_EXAMPLE_ANSWER = (
    "african_grey.n.01: grey parrot; red-and-black tail; white face; pale yellow eye; black hooked beak; "
    "scalloped grey feathers.\n"
    "parrot.n.01: brightly colored feathers; short hooked beak; zygodactyl feet; perched on a branch; "
    "tropical bird.\n"
    "parrot.n.02: person imitating another person; repeating words without understanding; copying "
    "gestures.\n"
    "cockatoo.n.01: white or light-colored; crested parrot; strong, curved beak; erectile crest; "
    "kept in a cage."
)

_OFFICIAL_INSTRUCTION = (
    "Goal: to discriminate these visual concepts in a photo. List all possible visual descriptive phrases "
    'for each visual concept without duplication, in the format "{concept name}: {all phrases delimited '
    'by semicolons}." for each concept. No duplication.'
)


def _concept_block(lines: Sequence[str]) -> str:
    return "Given visual concepts:\n" + ",\n".join(f"'{line}'" for line in lines) + "."


def _official_concepts(concepts: Sequence[tuple[str, str]]) -> str:
    """``Given visual concepts: 'crane.n.04: definition.', ...`` on one line, as the official code."""
    items = (f"'{label}: {' '.join(str(d).split()).rstrip('.')}.'" for label, d in concepts)
    return "Given visual concepts: " + ", ".join(items)


def _example_question() -> str:
    lines = [
        line
        for name, definitions in _EXAMPLE_DEFINITIONS
        for line in render_synset_definitions(name, definitions)
    ]
    return _concept_block(lines)


def candidate_concepts(name: str, definitions: Sequence[str]) -> list[tuple[str, str]]:
    """``(synset label, definition)`` for every synset merged under one vocabulary name (``clean``).

    >>> candidate_concepts("parrot", ["a bird", "a copycat"])
    [('parrot.n.01', 'a bird'), ('parrot.n.02', 'a copycat')]
    """
    return [(synset_label(name, i), str(d)) for i, d in enumerate(definitions)]


def official_concepts(synset_ids: Sequence[str], definitions: Sequence[str]) -> list[tuple[str, str]]:
    """``(WordNet synset name, definition)`` of one vocabulary entry, in WordNet's sense order.

    The ``official`` prompt style: labels are WordNet's own names (:func:`s3a.vocab.wordnet_sense_name`),
    e.g. the two ``crane`` synsets of the vocabulary are ``crane.n.04`` (the machine) and
    ``crane.n.05`` (the bird).

    Raises:
        KeyError: a synset id has no bundled WordNet name (not an ImageNet-21K/1K wnid).
    """
    if len(synset_ids) != len(definitions):
        raise ValueError(f"{len(synset_ids)} synset ids but {len(definitions)} definitions")
    pairs = [(wordnet_sense_name(str(w)), str(d)) for w, d in zip(synset_ids, definitions, strict=True)]
    return sorted(pairs, key=lambda pair: int(pair[0].rsplit(".", 1)[1]))


def build_prompt(concepts: Sequence[tuple[str, str]], style: str = "official") -> str:
    """The one-shot prompt (single user message) for one cluster's concepts.

    Args:
        concepts: ``(synset label, definition)`` pairs in candidate-rank order, from
            :func:`official_concepts` or :func:`candidate_concepts`. Non-empty with distinct labels.
        style: ``official`` (spec 5.4's wording, WordNet's glosses in the example, the concepts on one
            line as ``'name.n.NN: definition.'``) or ``clean`` (one concept per line).

    Returns:
        A question/answer worked example (African grey, the two parrot senses, cockatoo) followed by the
        same instruction for ``concepts``. The text is the cache key, so it must stay byte-stable.
    """
    if not concepts:
        raise ValueError("build_prompt needs at least one concept")
    if style not in PROMPT_STYLES:
        raise ValueError(f"style must be one of {PROMPT_STYLES}, got {style!r}")
    labels = [label for label, _ in concepts]
    if len(set(labels)) != len(labels):
        raise ValueError(f"concept labels must be distinct, got {labels}")
    if style == "official":
        return (
            f"Q: {_official_concepts(_OFFICIAL_EXAMPLE)}\n{_OFFICIAL_INSTRUCTION}\n"
            f"A:\n{_OFFICIAL_EXAMPLE_ANSWER}\n\n"
            f"Q: {_official_concepts(concepts)}\n{_OFFICIAL_INSTRUCTION}\n"
            "A:"
        )
    question = _concept_block([f"{label}: {' '.join(str(d).split())}" for label, d in concepts])
    return (
        f"Q: {_example_question()}\n{_INSTRUCTION}\n"
        f"A:\n{_EXAMPLE_ANSWER}\n\n"
        f"Q: {question}\n{_INSTRUCTION}\n"
        "A:"
    )


def example_answer_tokens(style: str = "official") -> list[int]:
    """Length of each line of the worked example's answer in CLIP BPE tokens (the ``max_tokens`` basis).

    CLIP's byte-pair tokenizer (bundled with open_clip, no download) stands in for the LLM's own; GPT
    tokenizers give counts of the same order for English text.
    """
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    answer = _OFFICIAL_EXAMPLE_ANSWER if style == "official" else _EXAMPLE_ANSWER
    return [len(tokenizer.encode(line)) for line in answer.splitlines()]
