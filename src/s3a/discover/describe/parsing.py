"""Reading an LLM answer: parsing, validation, the offline WordNet phrases, and the phrase counts
per name (spec 5.4-5.5)."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from s3a.discover.describe.params import InvalidAnswer

log = logging.getLogger(__name__)

# -------------------------------------------------------------------------------------------- parsing

_BULLET = re.compile(r"^\s*(?:[-*\u2022>]+|\(?\d+[.)]|[A-Za-z][.)](?=\s))\s*")
_ANSWER_PREFIX = re.compile(r"^\s*a\s*:\s*", re.IGNORECASE)
_KEY_DECORATION = "*_`'\"[]() \t"


def _norm_text(text: str) -> str:
    """Comparison form: lower-case, underscores as spaces, whitespace collapsed."""
    return " ".join(str(text).lower().replace("_", " ").split())


def _norm_key(text: str) -> str:
    """Comparison form of an answer key / synset label: lower-case, spaces as underscores."""
    key = str(text).strip().strip(_KEY_DECORATION).strip()
    return "_".join(key.lower().split())


def _clean_phrase(text: str) -> str:
    phrase = str(text).strip().rstrip(".").strip().strip("'\"`*").strip().rstrip(".")
    return _norm_text(phrase)


def parse_answer(text: str, expected_labels: Sequence[str]) -> dict[str, list[str]]:
    """Phrases per synset label from one answer; raises :class:`InvalidAnswer` when unusable.

    Every non-empty line ``key: p1; p2; ...`` gives phrases for ``key``. Tolerated: bullets and
    numbering (``-``, ``*``, ``1.``, ``2)``), bold or quoted keys, a leading ``A:``, a trailing period,
    surrounding whitespace. Lines without a colon are ignored, and so are header lines whose key is not
    a requested label and that carry no phrase (``Answer:``). Phrases are cleaned to a comparison form
    (lower-case, underscores as spaces, whitespace collapsed, no trailing period) and de-duplicated
    within a key, first occurrence first; a key given on two lines gets both lines' phrases.

    Args:
        text: the answer text.
        expected_labels: the synset labels of the prompt (``parrot.n.01``, ...).

    Returns:
        ``{expected label: [phrase, ...]}`` with exactly the expected labels, each non-empty.

    Raises:
        InvalidAnswer: the keys differ from ``expected_labels`` (missing or unexpected keys) or a
            requested label has no phrase.
    """
    by_norm = {_norm_key(label): label for label in expected_labels}
    found: dict[str, list[str]] = {}
    unexpected: list[str] = []
    for raw_line in str(text or "").splitlines():
        line = _BULLET.sub("", raw_line.strip(), count=1)
        line = _ANSWER_PREFIX.sub("", line, count=1) if line.count(":") > 1 else line
        key_text, colon, rest = line.partition(":")
        if not colon:
            continue
        key = _norm_key(key_text)
        phrases = [p for p in (_clean_phrase(part) for part in rest.split(";")) if p]
        if key not in by_norm:
            if phrases:
                unexpected.append(key_text.strip())
            continue
        bucket = found.setdefault(by_norm[key], [])
        bucket.extend(p for p in phrases if p not in bucket)
    problems = []
    missing = [label for label in expected_labels if label not in found]
    if missing:
        problems.append(f"missing concept(s) {missing}")
    if unexpected:
        problems.append(f"unexpected concept(s) {unexpected[:5]}")
    empty = [label for label in expected_labels if label in found and not found[label]]
    if empty:
        problems.append(f"no phrase for {empty}")
    if problems:
        raise InvalidAnswer("; ".join(problems))
    return {label: found[label] for label in expected_labels}


def wordnet_phrases(concepts: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Offline stand-in for an answer: each definition split on ``;`` into phrases.

    Deterministic; a concept whose definition is empty gets an empty list (no validation).
    """
    out: dict[str, list[str]] = {}
    for label, definition in concepts:
        phrases: list[str] = []
        for part in str(definition).split(";"):
            phrase = _clean_phrase(part)
            if phrase and phrase not in phrases:
                phrases.append(phrase)
        out[label] = phrases
    return out


# ---------------------------------------------------------------------------------- post-processing


def aggregate_phrases(
    answers: Iterable[Mapping[str, Sequence[str]]],
    label_names: Mapping[str, str],
    candidate_names: Sequence[str],
) -> list[tuple[str, str, int]]:
    """Post-process one cluster's answers (spec 5.4 steps 1-5).

    Args:
        answers: one ``{synset label: phrases}`` mapping per repeat.
        label_names: synset label -> vocabulary name (the merged key).
        candidate_names: the cluster's candidate names in rank order.

    Returns:
        ``(name, phrase, count)`` rows, names in candidate order, then by count (descending) and
        phrase. Phrases equal to any candidate name of the cluster (compared lower-case, underscores
        and spaces alike) and phrases found under more than one name are dropped; ``count`` is the
        number of occurrences over repeats and senses. A name with no phrase left has no row.
    """
    pooled: dict[str, Counter[str]] = {name: Counter() for name in candidate_names}
    for answer in answers:
        for label, phrases in answer.items():
            name = label_names[label]
            pooled.setdefault(name, Counter()).update(_norm_text(p) for p in phrases if _norm_text(p))
    banned = {_norm_text(name) for name in candidate_names}
    owners: Counter[str] = Counter(p for counter in pooled.values() for p in counter)
    rows = []
    for name, counter in pooled.items():
        kept = [(p, c) for p, c in counter.items() if p not in banned and owners[p] == 1]
        kept.sort(key=lambda pc: (-pc[1], pc[0]))
        rows.extend((name, p, int(c)) for p, c in kept)
    return rows


@dataclass
class _Prompt:
    """One distinct prompt and the clusters that share it (identical candidate lists)."""

    text: str
    concepts: list[tuple[str, str]]
    names: list[str]
    label_names: dict[str, str]
    clusters: list[int] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.concepts]

    def where(self) -> str:
        return "cluster" + ("s " if len(self.clusters) > 1 else " ") + ", ".join(map(str, self.clusters))


def validate_answer(
    text: str,
    labels: Sequence[str],
    label_names: Mapping[str, str],
    names: Sequence[str],
    style: str = "official",
) -> dict[str, list[str]]:
    """Parse one answer and apply the style's validity rule; raises :class:`InvalidAnswer`.

    Both styles need exactly the requested concepts, each with a phrase (:func:`parse_answer`). The
    ``official`` style also re-asks, as the official code does, when after the post-processing of this
    answer alone (:func:`aggregate_phrases`: phrases equal to a candidate name or shared between
    candidates dropped) some candidate keeps no phrase.
    """
    answer = parse_answer(text, labels)
    if style == "official":
        kept = {name for name, _, _ in aggregate_phrases([answer], label_names, names)}
        if empty := [name for name in names if name not in kept]:
            raise InvalidAnswer(f"no discriminative phrase left for {empty} (official re-query rule)")
    return answer
