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


def validate_answer(text: str, labels: Sequence[str], style: str = "official") -> dict[str, list[str]]:
    """Read one answer the style's way; raises :class:`InvalidAnswer` when it must be asked again.

    ``official``: cell 16's integrity check and reading (:func:`official_answer`); the check of a
    cluster's answers together (a candidate left with no phrase) is :func:`official_phrases`, applied by
    the driver to all the repeats of a cluster. ``clean``: the tolerant :func:`parse_answer`.
    """
    if style == "official":
        return official_answer(text, labels)
    return parse_answer(text, labels)


# ----------------------------------------------------------------------- the authors' reading (cell 16)


def official_lines(text: str) -> list[str]:
    """Cell 16's lines of an answer: lower-cased, ``\\n\\n`` made ``\\n``, split on ``\\n``.

    Empty lines are dropped; nothing is stripped (a line of spaces is a line).
    """
    return [line for line in str(text).lower().replace("\n\n", "\n").split("\n") if line]


def official_answer(text: str, labels: Sequence[str]) -> dict[str, list[str]]:
    """One answer read exactly as cell 16 of the authors' notebook reads it.

    Integrity check: the answer must have one line per requested synset name, and line ``k`` is paired
    with the ``k``-th requested name by position: its key (the text before the first ``": "``) must
    contain that name (``str.find``), and the names so cut out of the keys must be the requested ones.
    Phrases of line ``k``: the text between its first and second ``": "``, split on ``"; "``, empty
    strings dropped; nothing else is stripped, normalised or de-duplicated (a trailing period stays on
    the last phrase, underscores and quotes stay, a phrase given twice counts twice).

    One addition: a line whose key passes but that has no ``": "`` at all is invalid here (the notebook
    would stop with an ``IndexError`` when reading its phrases).

    Args:
        text: the answer.
        labels: the requested synset names in prompt order (``parrot.n.01``, ...).

    Returns:
        ``{synset name: [phrase, ...]}`` in line order.

    Raises:
        InvalidAnswer: the answer fails the integrity check (it is asked again, alone).
    """
    lines = official_lines(text)
    if len(lines) != len(labels):
        raise InvalidAnswer(
            f"{len(lines)} non-empty line(s) for {len(labels)} requested concept(s) {list(labels)} "
            "(official integrity check: one line per concept, in the prompt's order)"
        )
    keys = []
    for line, label in zip(lines, labels, strict=True):
        key = line.split(": ")[0]
        start = key.find(label)
        keys.append(key[start : start + len(label)])
    if set(keys) != set(labels):
        wrong = [
            f"line {k + 1} for {label}"
            for k, (key, label) in enumerate(zip(keys, labels, strict=True))
            if key != label
        ]
        raise InvalidAnswer(
            f"keys do not name the requested concepts by position ({', '.join(wrong[:5])}; official "
            "integrity check)"
        )
    out: dict[str, list[str]] = {}
    for k, (key, line) in enumerate(zip(keys, lines, strict=True)):
        parts = line.split(": ")
        if len(parts) < 2:
            raise InvalidAnswer(f"line {k + 1} ({key}) has no ': ' before its phrases")
        out.setdefault(key, []).extend(p for p in parts[1].split("; ") if p)
    return out


def official_phrases(
    answers: Iterable[Mapping[str, Sequence[str]]],
    label_names: Mapping[str, str],
    candidate_names: Sequence[str],
) -> tuple[list[tuple[str, str, int]], list[str]]:
    """Pool one cluster's answers and remove phrases exactly as cell 16 does.

    Over all the repeats together: the key of a synset name is its text before the first dot (senses of
    one name merge); phrases equal to any key (compared as raw strings) are removed; phrases found
    under two different keys are removed; ``count`` is the number of occurrences left.

    Args:
        answers: one :func:`official_answer` mapping per repeat.
        label_names: synset name -> vocabulary name (the ``name`` of the output rows; the key before
            the first dot is that name, except for names that contain a dot, ``st._augustine_grass``).
        candidate_names: the cluster's candidate names in rank order (the row order).

    Returns:
        ``(rows, empty)``: ``(name, phrase, count)`` rows, names in candidate order, then by count
        (descending) and phrase; and the names left with no phrase, for which the notebook asks all the
        cluster's answers again.
    """
    pooled: dict[str, list[str]] = {}  # synset name -> phrases over the repeats, in order
    for answer in answers:
        for label, phrases in answer.items():
            pooled.setdefault(label, []).extend(phrases)
    heads = {label: label.split(".")[0] for label in pooled}
    banned = set(heads.values())
    kept: dict[str, list[str]] = {}
    name_of: dict[str, str] = {}
    for label, phrases in pooled.items():
        kept.setdefault(heads[label], []).extend(p for p in phrases if p not in banned)
        name_of.setdefault(heads[label], label_names[label])
    owners = Counter(p for phrases in kept.values() for p in set(phrases))
    rows: list[tuple[str, str, int]] = []
    empty: list[str] = []
    order = {name: i for i, name in enumerate(candidate_names)}
    for head in sorted(kept, key=lambda h: order.get(name_of[h], len(order))):
        counts = Counter(p for p in kept[head] if owners[p] == 1)
        if not counts:
            empty.append(name_of[head])
        rows.extend(
            (name_of[head], p, int(c)) for p, c in sorted(counts.items(), key=lambda pc: (-pc[1], pc[0]))
        )
    return rows, empty
