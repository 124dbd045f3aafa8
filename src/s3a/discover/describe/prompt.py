"""The prompt of the describe step: the concepts of a cluster's candidates and the one-shot
question (spec 5.4)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from s3a.discover.describe.official import OfficialTemplate
from s3a.discover.describe.params import PROMPT_STYLES
from s3a.vocab import render_synset_definitions, synset_label, wordnet_sense_name

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- prompt

# The worked example of the ``clean`` prompt, in the project's own wording (the ``official`` style sends
# the authors' text, read from their notebook at run time: s3a.discover.describe.official). Definitions
# are short paraphrases of the WordNet glosses.
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


def _concept_block(lines: Sequence[str]) -> str:
    return "Given visual concepts:\n" + ",\n".join(f"'{line}'" for line in lines) + "."


def official_concept_list(concepts: Sequence[tuple[str, str]]) -> str:
    """The concept list of the ``official`` prompt, built as cell 13 of the authors' notebook does.

    Every concept as ``'<synset name>: <definition>.'`` (a period and a quote appended, the definition
    as it is), joined by ``", "``.

    >>> official_concept_list([("parrot.n.01", "a bird"), ("parrot.n.02", "a copycat")])
    "'parrot.n.01: a bird.', 'parrot.n.02: a copycat.'"
    """
    return ", ".join("'" + label + ": " + str(definition) + ".'" for label, definition in concepts)


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
    """``(WordNet synset name, definition)`` of one vocabulary entry, in the entry's (wnid) order.

    The ``official`` prompt style: labels are WordNet's own names (:func:`s3a.vocab.wordnet_sense_name`),
    e.g. the two ``crane`` synsets of the vocabulary are ``crane.n.05`` (the bird, listed first) and
    ``crane.n.04`` (the machine). The order is the authors' own, not the sense numbers': in their
    cached answers for three datasets (464 clusters), every cluster lists the senses of a name in wnid
    order (``mackinaw.n.04, mackinaw.n.03, mackinaw.n.01``), and the order matters, because their
    reading of an answer pairs its lines with the requested synsets by position.

    Raises:
        KeyError: a synset id has no bundled WordNet name (not an ImageNet-21K/1K wnid).
    """
    if len(synset_ids) != len(definitions):
        raise ValueError(f"{len(synset_ids)} synset ids but {len(definitions)} definitions")
    return [(wordnet_sense_name(str(w)), str(d)) for w, d in zip(synset_ids, definitions, strict=True)]


def build_prompt(
    concepts: Sequence[tuple[str, str]],
    style: str = "official",
    template: OfficialTemplate | None = None,
) -> str:
    """The one-shot prompt (single user message) for one cluster's concepts.

    Args:
        concepts: ``(synset label, definition)`` pairs in candidate-rank order, from
            :func:`official_concepts` or :func:`candidate_concepts`. Non-empty with distinct labels.
        style: ``official`` (the authors' ``template2`` applied to :func:`official_concept_list`,
            character for character) or ``clean`` (the project's own wording, one concept per line).
        template: the authors' prompt (:func:`s3a.discover.describe.official.official_template`);
            required for ``official``, ignored for ``clean``.

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
        if template is None:
            raise ValueError(
                "the official prompt style needs the authors' template: pass "
                "template=s3a.discover.describe.official.official_template(...)"
            )
        return template.render(official_concept_list(concepts))
    question = _concept_block([f"{label}: {' '.join(str(d).split())}" for label, d in concepts])
    return (
        f"Q: {_example_question()}\n{_INSTRUCTION}\n"
        f"A:\n{_EXAMPLE_ANSWER}\n\n"
        f"Q: {question}\n{_INSTRUCTION}\n"
        "A:"
    )


def example_answer_tokens(answer: str | None = None) -> list[int]:
    """Length of each line of a worked example's answer in CLIP BPE tokens (the ``max_tokens`` basis).

    ``answer`` defaults to the ``clean`` prompt's worked example. CLIP's byte-pair tokenizer (bundled
    with open_clip, no download) stands in for the LLM's own; GPT tokenizers give counts of the same
    order for English text.
    """
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    return [len(tokenizer.encode(line)) for line in (answer or _EXAMPLE_ANSWER).splitlines()]
