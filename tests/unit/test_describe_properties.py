"""Property-based tests of the answer readers: any text an LLM may send is read or re-asked, never a crash.

Answers are generated both as free text over an alphabet rich in the separators the readers split on
(``:``, ``": "``, ``;``, ``"; "``, newlines, bullets, dots, quotes, non-ASCII) and as near-valid answers
(one ``label: phrase; phrase.`` line per requested concept) with random damage. Each reader
(``official`` and ``clean``) must return phrases for exactly the requested concepts or raise
:class:`InvalidAnswer`; pooling any valid answers never fails.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3a.discover.describe import InvalidAnswer
from s3a.discover.describe.parsing import official_phrases, parse_answer, validate_answer

#: how many answers each property tries (quoted in the closing note of the issue)
EXAMPLES = 2000
LABELS = ["african_grey.n.01", "parrot.n.01", "parrot.n.02", "cockatoo.n.01", "st._augustine_grass.n.01"]
NAMES = {label: label.split(".n.")[0] for label in LABELS}

pieces = st.sampled_from(
    [":", ": ", ";", "; ", "\n", "\n\n", " ", ".", "-", "* ", "1. ", "A:", "**", "'", '"', "_", "\t", "é",
     "🦜", "parrot", "parrot.n.01", "cockatoo.n.01", "grey", "beak", "PARROT.N.02", "\r\n", "\x00"]
)  # fmt: skip
free_text = st.lists(st.one_of(pieces, st.text(max_size=6)), max_size=40).map("".join)
requested = st.lists(st.sampled_from(LABELS), min_size=1, max_size=4, unique=True)


@st.composite
def near_valid(draw):
    """One line per requested label (``label: p; p.``), then random damage: a line dropped, swapped,
    doubled or decorated, a separator lost, noise inserted."""
    labels = draw(requested)
    lines = [
        f"{label}: "
        + "; ".join(draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4)))
        + "."
        for label in labels
    ]
    for _ in range(draw(st.integers(0, 3))):
        if not lines:
            break
        k = draw(st.integers(0, len(lines) - 1))
        damage = draw(st.sampled_from(["drop", "swap", "double", "bullet", "colon", "noise", "upper"]))
        if damage == "drop":
            lines.pop(k)
        elif damage == "swap":
            lines[k], lines[-1] = lines[-1], lines[k]
        elif damage == "double":
            lines.insert(k, lines[k])
        elif damage == "bullet":
            lines[k] = "- " + lines[k]
        elif damage == "colon":
            lines[k] = lines[k].replace(": ", ":", 1)
        elif damage == "upper":
            lines[k] = lines[k].upper()
        else:
            lines.insert(k, draw(free_text))
    return "\n".join(lines), labels


def _read(text: str, labels: list[str], style: str) -> None:
    try:
        answer = validate_answer(text, labels, style)
    except InvalidAnswer as exc:
        assert str(exc)  # the reason, logged with the re-ask
        return
    assert set(answer) == set(labels), (answer, labels)
    assert all(isinstance(p, str) for phrases in answer.values() for p in phrases)
    if style == "clean":
        assert all(answer[label] for label in labels)  # every concept has a phrase
    rows, empty = official_phrases([answer], {label: NAMES[label] for label in labels}, list(NAMES.values()))
    assert all(isinstance(c, int) and c >= 1 for _, _, c in rows)
    assert set(empty) <= set(NAMES.values())


@pytest.mark.slow
@pytest.mark.parametrize("style", ["official", "clean"])
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(text=free_text, labels=requested)
def test_any_text_is_read_or_reasked(style, text, labels):
    _read(text, labels, style)


@pytest.mark.slow
@pytest.mark.parametrize("style", ["official", "clean"])
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(case=near_valid())
def test_any_damaged_answer_is_read_or_reasked(style, case):
    _read(*case, style)


def test_an_undamaged_answer_is_read_by_both_styles():
    labels = ["parrot.n.01", "parrot.n.02"]
    text = "parrot.n.01: green feathers; hooked beak.\nparrot.n.02: person talking."
    assert validate_answer(text, labels, "official") == {
        "parrot.n.01": ["green feathers", "hooked beak."],
        "parrot.n.02": ["person talking."],
    }
    assert parse_answer(text, labels) == {
        "parrot.n.01": ["green feathers", "hooked beak"],
        "parrot.n.02": ["person talking"],
    }
