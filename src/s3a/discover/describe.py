"""Prompt: discriminative visual phrases for each cluster's candidate names (spec 5.4).

Each cluster ``c`` comes with its top candidate names (``candidates.parquet``: ``cluster``, ``rank``,
``vocab_index``, ``vote_fraction``). Every candidate is expanded to all synsets merged under its
vocabulary name, rendered ``name.n.NN: definition``, and one one-shot prompt per cluster
(:func:`build_prompt`) asks an LLM for visual descriptive phrases of every synset. Two prompt styles:
``official`` (spec 5.4: WordNet's own sense names such as ``crane.n.04``,
:func:`s3a.vocab.wordnet_sense_name`, and the official wording) and ``clean`` (senses numbered within
the vocabulary entry, :func:`s3a.vocab.synset_label`). The prompt is sent ``repeats`` times
(independent samples at ``temperature``, at most ``max_tokens`` each); an answer must name exactly the
requested synsets, each with at least one phrase (:func:`parse_answer`), must not be cut at
``max_tokens``, and in the official style must leave every candidate a discriminative phrase
(:func:`validate_answer`); otherwise it is re-asked. The pooled answers are post-processed
(:func:`aggregate_phrases`) into rows ``(cluster, name, phrase, count, source)`` that the realign step
(spec 5.5) embeds and scores.

Backends (``DescribeParams.backend``):

* ``openai``: any OpenAI-compatible chat-completions endpoint through the ``openai`` client. The key
  is read from ``os.environ[api_key_env]`` when (and only when) a request has to be made; it is never
  logged, cached or put in an error message. Answers are cached in SQLite (:class:`AnswerCache`) as
  soon as each valid one arrives, so an interrupted run loses nothing and a rerun pays only for the
  missing answers. Rate limits (429), server errors (5xx), time-outs and connection errors are retried
  with exponential backoff and jitter; the client's own retries are off so the policy is ours. After
  the endpoint's first time-out the run sends one request at a time, and every time-out pauses all
  requests for ``timeout_s`` plus the back-off (a single-slot server is still generating the abandoned
  answer). When retries or re-asks are exhausted for a cluster, ``on_failure`` decides: ``fail`` stops
  the step naming the cluster; ``wordnet`` describes it by its WordNet definitions (``source =
  "wordnet"``), caches nothing for it, and goes on.
* ``cache-only``: the same prompts answered from the cache alone; never touches the network.
* ``wordnet``: offline and deterministic, no LLM: each synset's WordNet definition, split on ``;``,
  serves as its phrases. Used by the demo configuration and wherever no endpoint is available.

Post-processing (per cluster): the key of an answer line is mapped back to the candidate's vocabulary
name (senses of one name merge; the spec's "synset name up to the first dot", done through the label
table so names that contain a dot, such as ``st._augustine_grass``, stay whole); phrases are pooled
over the repeats keeping multiplicity; phrases equal to a candidate name of the cluster are dropped;
phrases that occur under more than one name of the cluster are dropped; ``count`` is the number of
occurrences. A candidate left with no phrase has no row: the realign step treats it as unscored.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import pandas as pd
from pydantic import model_validator
from tqdm.auto import tqdm

from s3a.config import LLM
from s3a.vocab import render_synset_definitions, synset_label, wordnet_sense_name

__all__ = [
    "AnswerCache",
    "ClusterFailure",
    "DescribeError",
    "DescribeParams",
    "InvalidAnswer",
    "aggregate_phrases",
    "build_prompt",
    "candidate_concepts",
    "describe_candidates",
    "example_answer_tokens",
    "official_concepts",
    "parse_answer",
    "validate_answer",
    "wordnet_fallback_clusters",
    "wordnet_phrases",
]

log = logging.getLogger(__name__)

BACKENDS = get_args(LLM.model_fields["backend"].annotation)
PROMPT_STYLES = get_args(LLM.model_fields["prompt_style"].annotation)
ON_FAILURE = get_args(LLM.model_fields["on_failure"].annotation)
SOURCES = ("llm", "wordnet")
DEFAULT_ENDPOINT = "https://api.openai.com/v1"
OUTPUT_COLUMNS = ["cluster", "name", "phrase", "count", "source"]
#: Default answer cap. Measured on the worked example (:func:`example_answer_tokens`): its longest
#: concept line is 35 BPE tokens; the longest candidate list of the vocabulary has 7 + 6 + 5 = 18
#: senses (``queen``, ``jack``, ``mate``), so the longest valid answer of the example's density is
#: about 18 x 35 = 630 tokens. 2048 leaves a 3x margin for models that list more phrases per concept.
DEFAULT_MAX_TOKENS = LLM.model_fields["max_tokens"].default


class DescribeError(RuntimeError):
    """The describe step cannot finish; the message names the cause and what to do."""


class InvalidAnswer(ValueError):
    """An LLM answer that does not list exactly the requested concepts, each with a phrase."""


class ClusterFailure(DescribeError):
    """Retries or re-asks are exhausted for one prompt (one or more clusters sharing it).

    With ``on_failure: wordnet`` these clusters are described by their WordNet definitions instead;
    every other failure (a rejected key, a refused request, an unreachable endpoint) stops the step.
    """


# --------------------------------------------------------------------------------------------- params


class DescribeParams(LLM):
    """Settings of the describe step (spec 5.4): the config block :class:`s3a.config.LLM`.

    Attributes:
        backend: ``"openai"`` (any OpenAI-compatible endpoint), ``"wordnet"`` (offline definitions)
            or ``"cache-only"`` (answers from ``cache_path`` only, never the network).
        base_url: endpoint root such as ``http://localhost:8000/v1``; ``None`` = the OpenAI API.
        model: chat model name (the paper used ``gpt-3.5-turbo-0301``, now retired: any other model,
            ``gpt-3.5-turbo`` included, can move the final numbers by about a point).
        temperature: sampling temperature (spec: 0.7).
        repeats: independent answers per cluster (spec: 3).
        max_concurrency: requests in flight at once.
        timeout_s: per-request time limit in seconds.
        max_retries: retries of one request after 429, 5xx, a time-out or a connection error.
        backoff_s: base delay of the exponential backoff (delay ``backoff_s * 2**k``, jittered).
        backoff_max_s: cap of one backoff delay.
        max_reasks: new requests after an invalid answer before giving up.
        api_key_env: name of the environment variable holding the key (never the key itself).
        cache_path: SQLite file of the answer cache (keep it under ``resources/``, not in an output).
        prompt_style: ``official`` (spec 5.4: the one-shot prompt with WordNet's own sense numbers,
            ``crane.n.04``, and the official re-query rule: an answer after which some candidate keeps
            no discriminative phrase is re-asked) or ``clean`` (senses numbered within the vocabulary
            entry, an answer is valid when every concept has a phrase).
        max_tokens: cap on the answer length sent with every request; an answer cut at the cap
            (``finish_reason: length``) is invalid and re-asked.
        on_failure: what happens when retries or re-asks are exhausted for a cluster: ``fail`` stops
            the step naming the cluster; ``wordnet`` describes that cluster by its WordNet definitions
            (``source = "wordnet"`` in the output), caches nothing for it, and goes on.
    """

    @model_validator(mode="after")
    def _backoff(self) -> DescribeParams:
        if self.backoff_max_s < self.backoff_s:
            raise ValueError(f"backoff_max_s ({self.backoff_max_s}) must be >= backoff_s ({self.backoff_s})")
        return self


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


# -------------------------------------------------------------------------------------------- cache


class AnswerCache:
    """SQLite cache of valid LLM answers keyed by ``(model, prompt, temperature, repeat)``.

    One table; the prompt is stored in full next to its SHA-256 (the key column), and so is the model
    id the server reported for the answer (``served_model``; a cache written before that column
    existed is upgraded in place). WAL journaling and a busy time-out let two describe jobs share the
    file. Writes are serialised by a lock and committed one by one, so every answer is on disk as soon
    as it arrives. The API key is never stored.
    """

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS llm_answers ("
        " model TEXT NOT NULL, prompt_sha256 TEXT NOT NULL, temperature REAL NOT NULL,"
        " repeat INTEGER NOT NULL, prompt TEXT NOT NULL, answer TEXT NOT NULL, served_model TEXT,"
        " PRIMARY KEY (model, prompt_sha256, temperature, repeat))"
    )

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(self._SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(llm_answers)")}
            if "served_model" not in columns:
                self._conn.execute("ALTER TABLE llm_answers ADD COLUMN served_model TEXT")
            self._conn.commit()

    @staticmethod
    def _digest(prompt: str) -> str:
        return hashlib.sha256(prompt.encode("utf-8")).hexdigest()

    def get_entry(
        self, model: str, prompt: str, temperature: float, repeat: int
    ) -> tuple[str, str | None] | None:
        """``(answer, model id the server reported or None)``, or None when not cached."""
        with self._lock:
            row = self._conn.execute(
                "SELECT answer, served_model FROM llm_answers"
                " WHERE model=? AND prompt_sha256=? AND temperature=? AND repeat=?",
                (model, self._digest(prompt), float(temperature), int(repeat)),
            ).fetchone()
        return None if row is None else (str(row[0]), None if row[1] is None else str(row[1]))

    def get(self, model: str, prompt: str, temperature: float, repeat: int) -> str | None:
        entry = self.get_entry(model, prompt, temperature, repeat)
        return None if entry is None else entry[0]

    def put(
        self,
        model: str,
        prompt: str,
        temperature: float,
        repeat: int,
        answer: str,
        served_model: str | None = None,
    ) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO llm_answers"
                " (model, prompt_sha256, temperature, repeat, prompt, answer, served_model)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model, self._digest(prompt), float(temperature), int(repeat), prompt, answer, served_model),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM llm_answers").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- driver


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


@dataclass
class _Concepts:
    """One cluster's candidates: names in rank order, concepts, synset label -> name."""

    cluster: int
    names: list[str]
    concepts: list[tuple[str, str]]
    label_names: dict[str, str]


def _cluster_table(candidates: pd.DataFrame, vocabulary: pd.DataFrame, style: str) -> list[_Concepts]:
    """Per cluster: candidate names (rank order), concepts in the prompt style, and label -> name."""
    need = {"cluster", "rank", "vocab_index"}
    if missing := need - set(candidates.columns):
        raise ValueError(f"candidates table lacks column(s) {sorted(missing)}; expected {sorted(need)}")
    need_vocab = {"vocab_index", "name", "definitions"} | ({"synset_ids"} if style == "official" else set())
    if missing := need_vocab - set(vocabulary.columns):
        raise ValueError(f"vocabulary table lacks column(s) {sorted(missing)}; expected {sorted(need_vocab)}")
    ids = vocabulary["synset_ids"] if "synset_ids" in vocabulary.columns else vocabulary["definitions"]
    entries = {
        int(i): (str(n), [str(d) for d in defs], [str(w) for w in wnids])
        for i, n, defs, wnids in zip(
            vocabulary["vocab_index"], vocabulary["name"], vocabulary["definitions"], ids, strict=True
        )
    }
    unknown = sorted({int(i) for i in candidates["vocab_index"]} - set(entries))
    if unknown:
        raise ValueError(f"candidate vocab_index value(s) {unknown[:5]} are not in the vocabulary table")
    table = []
    ordered = candidates.sort_values(["cluster", "rank"], kind="stable")
    for cluster, group in ordered.groupby("cluster", sort=True):
        names: list[str] = []
        concepts: list[tuple[str, str]] = []
        label_names: dict[str, str] = {}
        for index in group["vocab_index"]:
            name, definitions, wnids = entries[int(index)]
            if name in names:
                continue
            names.append(name)
            if style == "official":
                pairs = official_concepts(wnids, definitions)
            else:
                pairs = candidate_concepts(name, definitions or [""])
            for label, definition in pairs:
                concepts.append((label, definition))
                label_names[label] = name
        table.append(_Concepts(int(cluster), names, concepts, label_names))
    return table


def _empty_output() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cluster": pd.Series([], dtype="int64"),
            "name": pd.Series([], dtype="object"),
            "phrase": pd.Series([], dtype="object"),
            "count": pd.Series([], dtype="int64"),
            "source": pd.Series([], dtype="object"),
        }
    )


def describe_candidates(
    candidates: pd.DataFrame,
    vocabulary: pd.DataFrame,
    params: DescribeParams,
    progress: bool = True,
) -> pd.DataFrame:
    """Discriminative phrases for every cluster's candidates (spec 5.4).

    Args:
        candidates: ``cluster``, ``rank``, ``vocab_index`` (and ``vote_fraction``), the top names of
            each cluster; one prompt per cluster lists all their synsets in rank order.
        vocabulary: ``vocab_index``, ``name``, ``definitions`` (list of glosses, one per synset) and,
            for the ``official`` prompt style, ``synset_ids`` (the wnids, for WordNet's sense names).
        params: backend and LLM settings.
        progress: show a tqdm bar over the requests.

    Returns:
        DataFrame ``cluster`` (int64), ``name`` (str, the candidate's vocabulary name), ``phrase``
        (str), ``count`` (int64, occurrences over the repeats), ``source`` (``llm``, or ``wordnet``
        for the offline backend and for clusters whose LLM answers failed under
        ``on_failure: wordnet``), sorted by cluster, candidate rank, count (descending) and phrase. A
        candidate without a surviving phrase has no row. ``DataFrame.attrs`` (kept in the Parquet
        metadata by :func:`s3a.io.write_table`) records ``backend``, ``prompt_style``, ``llm_model``
        (requested), ``llm_models_reported`` (the model ids the server reported for the answers used)
        and ``wordnet_fallback_clusters``.

    Raises:
        DescribeError: missing key, rejected key, unreachable endpoint, answers that stay invalid
            after ``max_reasks`` re-asks or retries exhausted (unless ``on_failure: wordnet``), or
            (``cache-only``) answers missing from the cache.
    """
    style = params.prompt_style
    clusters = _cluster_table(candidates, vocabulary, style) if len(candidates) else []
    attrs: dict[str, object] = {
        "backend": params.backend,
        "prompt_style": style,
        "llm_model": params.model if params.backend != "wordnet" else None,
        "llm_models_reported": [],
        "wordnet_fallback_clusters": [],
    }
    if not clusters:
        log.info("describe: no clusters, nothing to do")
        out = _empty_output()
        out.attrs.update(attrs)
        return out

    fallback: set[int] = set()
    if params.backend == "wordnet":
        per_cluster = {c.cluster: [wordnet_phrases(c.concepts)] for c in clusters}
        log.info("describe: %d clusters from WordNet definitions (offline backend)", len(clusters))
    else:
        prompts: dict[str, _Prompt] = {}
        for c in clusters:
            text = build_prompt(c.concepts, style)
            prompts.setdefault(text, _Prompt(text, c.concepts, c.names, c.label_names)).clusters.append(
                c.cluster
            )
        answers, failed, models = _answer_prompts(list(prompts.values()), params, progress)
        attrs["llm_models_reported"] = sorted(models)
        per_cluster = {}
        for prompt in prompts.values():
            for cluster in prompt.clusters:
                if prompt.text in failed:
                    fallback.add(cluster)
                    per_cluster[cluster] = [wordnet_phrases(prompt.concepts)]
                else:
                    per_cluster[cluster] = answers[prompt.text]
        if fallback:
            log.warning(
                "describe: %d of %d clusters described by their WordNet definitions because the LLM gave "
                "no usable answer (llm.on_failure: wordnet): clusters %s; nothing was cached for them, so "
                "a rerun with a better server fills them in",
                len(fallback),
                len(clusters),
                sorted(fallback),
            )
        if models:
            log.info("describe: model id(s) reported by the server: %s", ", ".join(sorted(models)))
    attrs["wordnet_fallback_clusters"] = sorted(fallback)

    rows = []
    for c in clusters:
        source = "wordnet" if params.backend == "wordnet" or c.cluster in fallback else "llm"
        kept = aggregate_phrases(per_cluster[c.cluster], c.label_names, c.names)
        rows.extend((c.cluster, name, phrase, count, source) for name, phrase, count in kept)
        if dropped := [n for n in c.names if n not in {name for name, _, _ in kept}]:
            log.info("describe: cluster %d: no discriminative phrase left for %s", c.cluster, dropped)
    out = pd.DataFrame(rows, columns=OUTPUT_COLUMNS) if rows else _empty_output()
    out = out.astype({"cluster": "int64", "count": "int64"})
    out.attrs.update(attrs)
    return out


def wordnet_fallback_clusters(descriptions: pd.DataFrame) -> list[int]:
    """Clusters described by WordNet definitions after the LLM failed (``on_failure: wordnet``).

    Read from the metadata :func:`describe_candidates` writes; a table without it (written before the
    column existed) counts none.
    """
    return [int(c) for c in descriptions.attrs.get("wordnet_fallback_clusters", [])]


def _answer_prompts(
    prompts: list[_Prompt], params: DescribeParams, progress: bool
) -> tuple[dict[str, list[dict[str, list[str]]]], dict[str, str], set[str]]:
    """Valid answers ``[repeat 0, repeat 1, ...]`` per prompt, from cache or endpoint.

    Returns:
        ``(answers, failed, models)``: answers of every prompt that got all its repeats; the prompts
        that failed under ``on_failure: wordnet`` (prompt text -> reason); the model ids the server
        reported for the answers used.
    """
    style = params.prompt_style
    with AnswerCache(params.cache_path) as cache:
        parsed: dict[tuple[str, int], dict[str, list[str]]] = {}
        models: set[str] = set()
        missing: list[tuple[_Prompt, int]] = []
        for prompt in prompts:
            for repeat in range(params.repeats):
                entry = cache.get_entry(params.model, prompt.text, params.temperature, repeat)
                if entry is not None:
                    try:
                        parsed[prompt.text, repeat] = validate_answer(
                            entry[0], prompt.labels, prompt.label_names, prompt.names, style
                        )
                        if entry[1]:
                            models.add(entry[1])
                        continue
                    except InvalidAnswer as exc:  # only valid answers are written; be safe anyway
                        log.warning("describe: cached answer for %s is invalid (%s)", prompt.where(), exc)
                missing.append((prompt, repeat))
        total = len(prompts) * params.repeats
        log.info(
            "describe: %d distinct prompts x %d repeats = %d answers; %d from the cache %s, %d to request",
            len(prompts),
            params.repeats,
            total,
            total - len(missing),
            cache.path,
            len(missing),
        )
        if missing and params.backend == "cache-only":
            clusters = sorted({c for prompt, _ in missing for c in prompt.clusters})
            raise DescribeError(
                f"backend 'cache-only': {len(missing)} of {total} answers are not in the cache "
                f"{cache.path} (clusters {clusters[:20]}{' ...' if len(clusters) > 20 else ''}); run the "
                "describe step once with backend 'openai' (and the API key set) to fill it, or use "
                "backend 'wordnet' to work offline"
            )
        failed: dict[str, str] = {}
        if missing:
            runner = _OpenAIRunner(params, cache)
            received, failed = runner.run(missing, progress)
            parsed.update(received)
            models |= runner.models
        answers = {
            p.text: [parsed[p.text, r] for r in range(params.repeats)]
            for p in prompts
            if p.text not in failed
        }
        return answers, failed, models


class _Stop(Exception):
    """Raised inside a worker when another worker has failed."""


class _Skip(Exception):
    """Raised inside a worker whose prompt has already failed (``on_failure: wordnet``)."""


class _Gate:
    """Requests in flight at once for one endpoint, and a pause before the next one.

    Starts at ``max_concurrency``; after the endpoint's first time-out it falls to 1 for the rest of
    the run, and every time-out pauses all requests (a single-slot server is still generating the
    abandoned answer; sending more only queues them behind it until they time out too).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active = 0
        self._resume_at = 0.0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self, stop: threading.Event) -> Iterator[None]:
        with self._cond:
            while self._active >= self.limit or time.monotonic() < self._resume_at:
                if stop.is_set():
                    raise _Stop()
                wait = self._resume_at - time.monotonic()
                self._cond.wait(min(0.05, wait) if wait > 0 else 0.05)
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def after_timeout(self, delay: float) -> int | None:
        """Pause all requests for ``delay`` seconds; lower the limit to 1. Returns the old limit once."""
        with self._cond:
            self._resume_at = max(self._resume_at, time.monotonic() + delay)
            if self.limit > 1:
                old, self.limit = self.limit, 1
                return old
            return None


class _OpenAIRunner:
    """Sends the missing requests through the ``openai`` client with our retry and re-ask policy."""

    _RETRYABLE_NAMES = ("RateLimitError", "InternalServerError", "APITimeoutError", "APIConnectionError")

    def __init__(self, params: DescribeParams, cache: AnswerCache) -> None:
        self.params = params
        self.cache = cache
        self.endpoint = params.base_url or DEFAULT_ENDPOINT
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._gate = _Gate(params.max_concurrency)
        self.requests = self.retries = self.reasks = self.timeouts = 0
        self.models: set[str] = set()
        self.failed: dict[str, str] = {}
        self._key = ""

    def run(
        self, jobs: list[tuple[_Prompt, int]], progress: bool
    ) -> tuple[dict[tuple[str, int], dict[str, list[str]]], dict[str, str]]:
        import openai

        self._openai = openai
        key = os.environ.get(self.params.api_key_env, "").strip()
        if not key:
            raise DescribeError(
                f"{len(jobs)} LLM answers are not cached and the environment variable "
                f"{self.params.api_key_env} (params.api_key_env) is not set; export the API key in it, "
                "or use backend 'cache-only' / 'wordnet'"
            )
        self._key = key
        client = openai.OpenAI(
            api_key=key, base_url=self.params.base_url, max_retries=0, timeout=self.params.timeout_s
        )
        self._retryable = tuple(getattr(openai, n) for n in self._RETRYABLE_NAMES)
        results: dict[tuple[str, int], dict[str, list[str]]] = {}
        bar = tqdm(total=len(jobs), desc="describe: LLM answers", unit="answer", disable=not progress)
        error: BaseException | None = None
        stopped = 0
        pool = ThreadPoolExecutor(max_workers=min(self.params.max_concurrency, len(jobs)))
        try:
            futures = [pool.submit(self._one, client, p, r) for p, r in jobs]
            for fut in as_completed(futures):
                exc = fut.exception()
                if isinstance(exc, _Stop):  # a worker that stopped because another one failed:
                    stopped += 1  # keep going to the failure itself, which names its cause
                    continue
                if exc is not None:
                    error = exc
                    break
                bar.update(1)
                if (item := fut.result()) is not None:
                    key_text, repeat, answer = item
                    results[key_text, repeat] = answer
        finally:
            self._stop.set()  # on an error or Ctrl-C, workers stop before their next request
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            client.close()
            self._key = ""
            log.info(
                "describe: %d requests made to %s, %d answers received, %d re-asks, %d retries, "
                "%d time-outs, %d prompts failed, concurrency at the end %d",
                self.requests,
                self.endpoint,
                len(results),
                self.reasks,
                self.retries,
                self.timeouts,
                len(self.failed),
                self._gate.limit,
            )
        if error is not None:
            raise error
        if stopped:
            raise DescribeError(
                f"the describe step was interrupted with {stopped} LLM answers outstanding; the answers "
                f"received are kept in {self.cache.path}, and a rerun requests only the missing ones"
            )
        return {k: v for k, v in results.items() if k[0] not in self.failed}, dict(self.failed)

    def _count(self, attr: str) -> None:
        with self._lock:
            setattr(self, attr, getattr(self, attr) + 1)

    def _scrub(self, text: str) -> str:
        """``text`` with the key (and anything shaped like an OpenAI key) masked."""
        if self._key:
            text = text.replace(self._key, "***")
        return re.sub(r"sk-[A-Za-z0-9_\-*]{4,}", "sk-***", text)

    def _one(self, client, prompt: _Prompt, repeat: int) -> tuple[str, int, dict[str, list[str]]] | None:
        try:
            return self._ask(client, prompt, repeat)
        except _Skip:
            return None
        except ClusterFailure as exc:
            if self.params.on_failure != "wordnet":
                self._stop.set()
                raise
            with self._lock:
                first = prompt.text not in self.failed
                self.failed.setdefault(prompt.text, str(exc))
            if first:
                log.warning(
                    "describe: %s falls back to WordNet definitions (llm.on_failure: wordnet): %s",
                    prompt.where(),
                    exc,
                )
            return None
        except BaseException:
            self._stop.set()  # stop the other workers before they start another request
            raise

    def _ask(self, client, prompt: _Prompt, repeat: int) -> tuple[str, int, dict[str, list[str]]]:
        """One valid answer for ``(prompt, repeat)``, written to the cache, with retries and re-asks."""
        p = self.params
        attempt_errors = 0
        reasks = 0
        while True:
            if self._stop.is_set():
                raise _Stop()
            if prompt.text in self.failed:
                raise _Skip()
            try:
                with self._gate.slot(self._stop):
                    self._count("requests")
                    response = client.chat.completions.create(
                        model=p.model,
                        messages=[{"role": "user", "content": prompt.text}],
                        temperature=p.temperature,
                        max_tokens=p.max_tokens,
                    )
            except self._retryable as exc:
                attempt_errors += 1
                what = self._describe_failure(exc)
                timed_out = isinstance(exc, self._openai.APITimeoutError)
                if attempt_errors > p.max_retries:
                    unreachable = isinstance(exc, self._openai.APIConnectionError) and not timed_out
                    error_type = DescribeError if unreachable else ClusterFailure
                    raise error_type(
                        f"no answer from the LLM endpoint {self.endpoint} for {prompt.where()} after "
                        f"{attempt_errors} attempt(s); last failure: {what}. Check that base_url is right, "
                        "the endpoint is up and reachable from this machine (the describe step needs "
                        "network access; run it on a login node or use backend 'cache-only' / 'wordnet'), "
                        f"and raise max_retries/timeout_s for a slow endpoint. Answers received so far are "
                        f"kept in {self.cache.path}; a rerun requests only the missing ones."
                    ) from None
                delay = self._backoff(attempt_errors, exc)
                self._count("retries")
                if timed_out:
                    # The server may still be generating the abandoned answer: wait for it as long as the
                    # request itself was given, on top of the usual delay, and send one at a time.
                    self._count("timeouts")
                    delay += p.timeout_s
                    old = self._gate.after_timeout(delay)
                    if old is not None:
                        log.warning(
                            "describe: the LLM endpoint %s timed out; concurrency lowered from %d to 1 for "
                            "the rest of this run, and every time-out pauses requests for timeout_s plus "
                            "the back-off so a busy server can finish",
                            self.endpoint,
                            old,
                        )
                log.warning(
                    "describe: %s: %s; retry %d/%d in %.2f s",
                    prompt.where(),
                    what,
                    attempt_errors,
                    p.max_retries,
                    delay,
                )
                if not timed_out and self._stop.wait(delay):
                    raise _Stop() from None
                continue
            except self._openai.APIStatusError as exc:
                raise self._status_error(exc, prompt) from None
            choice = response.choices[0] if response.choices else None
            content = (choice.message.content if choice is not None else None) or ""
            try:
                if choice is not None and choice.finish_reason == "length":
                    raise InvalidAnswer(
                        f"answer cut at max_tokens={p.max_tokens} (finish_reason 'length'); raise "
                        "llm.max_tokens if valid answers are longer"
                    )
                answer = validate_answer(
                    content, prompt.labels, prompt.label_names, prompt.names, p.prompt_style
                )
            except InvalidAnswer as exc:
                reasks += 1
                if reasks > p.max_reasks:
                    raise ClusterFailure(
                        f"the LLM gave no valid answer for {prompt.where()} (repeat {repeat}) in "
                        f"{reasks} tries; last problem: {exc}. Expected one line per concept "
                        f"{prompt.labels}; try another model or raise max_reasks"
                    ) from None
                self._count("reasks")
                log.warning(
                    "describe: invalid answer for %s (%s); re-asking (%d/%d)",
                    prompt.where(),
                    exc,
                    reasks,
                    p.max_reasks,
                )
                continue
            served = getattr(response, "model", None) or None
            if served:
                with self._lock:
                    self.models.add(str(served))
            self.cache.put(p.model, prompt.text, p.temperature, repeat, content, served)
            return prompt.text, repeat, answer

    def _describe_failure(self, exc: Exception) -> str:
        status = getattr(exc, "status_code", None)
        if isinstance(exc, self._openai.APITimeoutError):
            return f"timed out after {self.params.timeout_s:g} s"
        if isinstance(exc, self._openai.APIConnectionError):
            return f"connection error ({self._scrub(str(exc.__cause__ or exc))})"
        if status == 429:
            return "rate limited (429)"
        return f"server error ({status})"

    def _backoff(self, attempt: int, exc: Exception) -> float:
        p = self.params
        delay = min(p.backoff_max_s, p.backoff_s * 2 ** (attempt - 1))
        delay *= 0.5 + random.random() / 2  # jitter: spread concurrent retries apart
        response = getattr(exc, "response", None)
        retry_after = None
        if response is not None:
            try:
                retry_after = float(response.headers.get("retry-after", ""))
            except (TypeError, ValueError):
                retry_after = None
        if retry_after is not None and retry_after > delay:
            delay = min(p.backoff_max_s, retry_after)
        return delay

    def _status_error(self, exc, prompt: _Prompt) -> DescribeError:
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            # The server's message is not repeated: some echo (part of) the key.
            return DescribeError(
                f"the LLM endpoint {self.endpoint} rejected the key ({status}) read from the environment "
                f"variable {self.params.api_key_env}; check that it holds a valid key for this endpoint "
                "(and that the key may use the model)"
            )
        message = self._scrub(str(getattr(exc, "message", "") or exc))
        return DescribeError(
            f"the LLM endpoint {self.endpoint} refused the request for {prompt.where()} ({status}): "
            f"{message}. Check model={self.params.model!r} and base_url"
        )
