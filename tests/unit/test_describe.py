"""Tests of the LLM describe step (spec 5.4) through the real ``openai`` client.

The endpoint is a small OpenAI-compatible server started on 127.0.0.1 by the ``llm`` fixture. Its
behaviour per request is scripted: ``"good"`` (valid lines for the prompt's concepts), ``"malformed"``
(wrong keys), ``"shared"`` (valid keys, but every concept gets the same phrase), an HTTP status (429,
500, 401, 400) or ``"hang"`` (answers only after the client has timed out). Server-wide modes model
weak local servers: ``ramble`` (generates until the client gives up unless ``max_tokens`` is sent, then
stops at the cap), ``slot_s`` (one generation at a time, each taking that long, abandoned requests
included, like a single-slot llama.cpp server), ``garbage_labels`` (always malformed for prompts
with those concepts) and ``plain`` (good answers as bare ``label: p1; p2`` lines, the layout the
official reading accepts). Every request it receives is recorded.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from s3a.discover.describe import (
    AnswerCache,
    DescribeError,
    DescribeParams,
    InvalidAnswer,
    OfficialTemplate,
    aggregate_phrases,
    build_prompt,
    candidate_concepts,
    describe_candidates,
    parse_answer,
    wordnet_phrases,
)
from s3a.logs import log_to

KEY = "sk-test-SECRET-123"
KEY_ENV = "S3A_TEST_LLM_KEY"

# ----------------------------------------------------------------------------------- fake endpoint

# Phrases the fake LLM gives per synset label; chosen to exercise every post-processing rule.
PHRASES = {
    "parrot.n.01": ["green feathers", "hooked beak", "perched on a branch"],
    "parrot.n.02": ["person talking", "Hooked beak"],  # same key twice: kept, counted twice
    "cockatoo.n.01": ["white crest", "curved beak", "parrot"],  # "parrot" = a competing name
    "macaw.n.01": ["long tail", "curved beak", "blue and yellow feathers", "Cockatoo"],
    "beagle.n.01": ["tricolour coat", "floppy ears"],
    "basset.n.01": ["long ears", "short legs", "floppy ears"],  # shared with beagle: dropped
    "harrier.n.01": ["harrier", "Basset"],  # nothing survives: harrier gets no row
    "crane.n.04": ["steel boom", "hook on a cable"],  # WordNet's own sense numbers (official style)
    "crane.n.05": ["long neck", "wading in a marsh"],
}
FIRST_ONLY = {"parrot.n.01": "sitting on a perch"}  # only in the first answer to a prompt

EXPECTED = [
    (0, "parrot", "hooked beak", 6),
    (0, "parrot", "green feathers", 3),
    (0, "parrot", "perched on a branch", 3),
    (0, "parrot", "person talking", 3),
    (0, "parrot", "sitting on a perch", 1),
    (0, "cockatoo", "white crest", 3),
    (0, "macaw", "blue and yellow feathers", 3),
    (0, "macaw", "long tail", 3),
    (5, "beagle", "tricolour coat", 3),
    (5, "basset", "long ears", 3),
    (5, "basset", "short legs", 3),
]

_LABEL_LINE = re.compile(r"'([a-z0-9_.\-]+\.n\.\d\d): ")


def prompt_labels(prompt: str) -> list[str]:
    """The synset labels of the cluster part of a prompt (after the last "Given visual concepts:")."""
    return _LABEL_LINE.findall(prompt.rsplit("Given visual concepts:", 1)[1])


def good_answer(labels: list[str], first: bool) -> str:
    """A valid answer in a deliberately messy layout (preamble, bullets, bold, numbering)."""
    lines = ["Sure! Here are the phrases", "A:"]
    for i, label in enumerate(labels):
        phrases = list(PHRASES[label]) + ([FIRST_ONLY[label]] if first and label in FIRST_ONLY else [])
        prefix = ["- ", f"{i + 1}. ", "* **", ""][i % 4]
        key = f"{label}**" if prefix.endswith("**") else label
        lines.append(f"{prefix}{key}: {'; '.join(phrases)}.")
        lines.append("")
    return "\n".join(lines)


class _Server(ThreadingHTTPServer):
    """The fake endpoint's server: a listen backlog for every request a test has in flight at once (the
    socketserver default of 5 drops the 6th to 8th simultaneous connection, which the client's TCP
    stack sends again 1 s later, as a real server with its larger backlog would not make it)."""

    request_queue_size = 64


class FakeLLM:
    """Scriptable OpenAI-compatible chat-completions endpoint (see the module docstring)."""

    def __init__(self) -> None:
        self.queue: deque = deque()
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.seen_prompts: Counter[str] = Counter()
        self.hang_s = 1.5
        self.ramble = False
        self.slot_s: float | None = None
        self.slot = threading.Lock()
        self.garbage_labels: set[str] = set()
        self.served_model: str | None = None
        self.plain = False  # answers as bare "label: p1; p2" lines (what the official reading needs)
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def script(self, *behaviours) -> None:
        with self.lock:
            self.queue.extend(behaviours)

    def take(self, record: dict) -> object:
        with self.lock:
            self.requests.append(record)
            return self.queue.popleft() if self.queue else "good"

    def first_answer(self, prompt: str) -> bool:
        with self.lock:
            self.seen_prompts[prompt] += 1
            return self.seen_prompts[prompt] == 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (time-out test)
            pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        fake: FakeLLM = self.server.fake  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        behaviour = fake.take(
            {
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "body": body,
                "arrived": time.monotonic(),
            }
        )
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        if isinstance(behaviour, int):
            # The 401/400 bodies echo the key, as some servers do: it must not reach our messages.
            message = f"Incorrect API key provided: {KEY}" if behaviour in (400, 401) else "try later"
            self._send(behaviour, {"error": {"message": message, "type": "error", "code": behaviour}})
            return
        prompt = body["messages"][-1]["content"]
        labels = prompt_labels(prompt)
        if behaviour == "hang" or (fake.ramble and "max_tokens" not in body):
            time.sleep(fake.hang_s)  # still "generating" when the client gives up
        if fake.slot_s is not None:
            with fake.slot:  # one generation at a time, abandoned ones included
                time.sleep(fake.slot_s)
        finish = "stop"
        if behaviour == "malformed" or fake.garbage_labels & set(labels):
            text = "\n".join(f"{label.split('.')[0]}: some phrase; another." for label in labels)
        elif behaviour == "shared":
            text = "\n".join(f"{label}: bird; feathers." for label in labels)
        elif fake.plain:
            text = "\n".join(f"{label}: {'; '.join(PHRASES[label])}" for label in labels)
        else:
            text = good_answer(labels, fake.first_answer(prompt))
        if fake.ramble and len(text.split()) > body.get("max_tokens", len(text.split())):
            text, finish = " ".join(text.split()[: body["max_tokens"]]), "length"
        self._send(
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": fake.served_model or body.get("model", "test"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )


@pytest.fixture
def llm(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv(KEY_ENV, KEY)
    fake = FakeLLM()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


# ------------------------------------------------------------------------------------------- inputs


@pytest.fixture
def vocabulary() -> pd.DataFrame:
    entries = [
        ("basset", ["hound with short legs and long ears; slow tracker"]),
        ("beagle", ["small hound with a tricolour coat; used for hunting hares"]),
        ("cockatoo", ["white crested parrot; from Australia"]),
        ("harrier", ["used for hunting hares; Basset"]),
        ("macaw", ["long-tailed parrot of tropical America; bright plumage"]),
        ("parrot", ["tropical bird with a hooked beak", "a person who copies others"]),
    ]
    return pd.DataFrame(
        {
            "vocab_index": range(len(entries)),
            "name": [n for n, _ in entries],
            "synset_ids": [[f"n{i:08d}{j}" for j in range(len(d))] for i, (_, d) in enumerate(entries)],
            "definitions": [d for _, d in entries],
        }
    )


def make_candidates(vocabulary: pd.DataFrame, clusters: dict[int, list[str]]) -> pd.DataFrame:
    index = dict(zip(vocabulary["name"], vocabulary["vocab_index"], strict=True))
    rows = [
        (c, rank, index[name], 0.5 / (rank + 1))
        for c, names in clusters.items()
        for rank, name in enumerate(names)
    ]
    return pd.DataFrame(rows, columns=["cluster", "rank", "vocab_index", "vote_fraction"])


@pytest.fixture
def candidates(vocabulary) -> pd.DataFrame:
    # shuffled row order: the function must sort by cluster and rank itself
    frame = make_candidates(
        vocabulary, {5: ["beagle", "basset", "harrier"], 0: ["parrot", "cockatoo", "macaw"]}
    )
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


def params_for(tmp_path, fake: FakeLLM | None = None, **overrides) -> DescribeParams:
    settings = dict(
        backend="openai",
        base_url=fake.url if fake else None,
        model="test-model",
        repeats=3,
        max_concurrency=2,
        timeout_s=5.0,
        max_retries=3,
        backoff_s=0.001,
        backoff_max_s=0.01,
        max_reasks=3,
        api_key_env=KEY_ENV,
        cache_path=str(tmp_path / "resources" / "llm_cache.sqlite"),
        prompt_style="clean",  # the fixture's synset ids are made up; the official style has its own tests
    )
    settings.update(overrides)
    return DescribeParams(**settings)


def as_rows(frame: pd.DataFrame) -> list[tuple]:
    return [
        (int(c), n, p, int(k))
        for c, n, p, k in frame[["cluster", "name", "phrase", "count"]].itertuples(index=False)
    ]


def assert_no_key_anywhere(tmp_path, caplog, *texts: str) -> None:
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files, "expected the cache (and log) under tmp_path"
    for path in files:
        assert KEY.encode() not in path.read_bytes(), f"API key written to {path}"
    for record in caplog.records:
        assert KEY not in record.getMessage(), f"API key in log record {record.name}"
    for text in texts:
        assert KEY not in text


# ----------------------------------------------------------------------------------- prompt, parse


def test_build_prompt_one_shot_example_then_cluster_concepts():
    concepts = candidate_concepts("parrot", ["bird with a hooked beak", "a copycat"]) + candidate_concepts(
        "st._augustine_grass", ["low  mat-forming\ngrass"]
    )
    assert [label for label, _ in concepts] == ["parrot.n.01", "parrot.n.02", "st._augustine_grass.n.01"]
    prompt = build_prompt(concepts, style="clean")
    assert prompt == build_prompt(concepts, style="clean")  # byte-stable (it is the cache key)
    example, question = prompt.rsplit("Q: ", 1)
    assert example.startswith("Q: Given visual concepts:\n'african_grey.n.01: ")
    for label in ("african_grey.n.01", "parrot.n.01", "parrot.n.02", "cockatoo.n.01"):
        assert f"'{label}: " in example and f"\n{label}: " in example  # question and worked answer
    assert "african_grey.n.01: grey parrot; red tail;" in example
    assert prompt.count("Goal: discriminate these visual concepts in a photo.") == 2
    assert "'{concept name}: {phrases delimited by semicolons}.' with no duplication." in question
    assert question.startswith("Given visual concepts:\n'parrot.n.01: bird with a hooked beak',\n")
    assert "'st._augustine_grass.n.01: low mat-forming grass'." in question  # whitespace collapsed
    assert question.endswith("A:")
    assert prompt_labels(prompt) == ["parrot.n.01", "parrot.n.02", "st._augustine_grass.n.01"]
    with pytest.raises(ValueError, match="at least one"):
        build_prompt([], style="clean")
    with pytest.raises(ValueError, match="distinct"):
        build_prompt([("a.n.01", "x"), ("a.n.01", "y")], style="clean")


def test_parse_answer_tolerates_layout_noise():
    text = (
        "Sure, here they are:\n"
        "Answer:\n"
        "  1. parrot.n.01: Green feathers; hooked beak;  hooked beak ; \n"
        "\n"
        "- **parrot.n.02**: person repeating words.\n"
        "no colon on this line\n"
        "* `St._Augustine_Grass.n.01`: low_grass; 'lawn'.\n"
        "A: parrot.n.01: green   feathers; perched.\n"
    )
    got = parse_answer(text, ["parrot.n.01", "parrot.n.02", "st._augustine_grass.n.01"])
    assert got == {
        "parrot.n.01": ["green feathers", "hooked beak", "perched"],
        "parrot.n.02": ["person repeating words"],
        "st._augustine_grass.n.01": ["low grass", "lawn"],
    }
    assert list(got) == ["parrot.n.01", "parrot.n.02", "st._augustine_grass.n.01"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("parrot.n.01: a; b.", "missing concept"),  # parrot.n.02 absent
        ("parrot.n.01: a.\nparrot.n.02: b.\nmacaw.n.01: c.", "unexpected concept"),
        ("parrot: a.\nparrot.n.02: b.", "missing concept"),  # sense suffix dropped
        ("parrot.n.01: a.\nparrot.n.02: ; .", "no phrase"),
        ("", "missing concept"),
    ],
)
def test_parse_answer_rejects_wrong_keys_and_empty_concepts(text, problem):
    with pytest.raises(InvalidAnswer, match=problem):
        parse_answer(text, ["parrot.n.01", "parrot.n.02"])


def test_aggregate_phrases_pools_repeats_and_drops_shared_and_name_phrases():
    label_names = {"parrot.n.01": "parrot", "parrot.n.02": "parrot", "kea.n.01": "kea", "lory.n.01": "lory"}
    answers = [
        {
            "parrot.n.01": ["beak", "green"],
            "parrot.n.02": ["green"],
            "kea.n.01": ["olive"],
            "lory.n.01": ["lory"],
        },
        {
            "parrot.n.01": ["Green", "mimic"],
            "parrot.n.02": ["copy"],
            "kea.n.01": ["beak", "Parrot"],
            "lory.n.01": ["Kea"],
        },
    ]
    rows = aggregate_phrases(answers, label_names, ["parrot", "kea", "lory"])
    # "beak" is under parrot and kea -> dropped; "parrot"/"kea"/"lory" are candidate names -> dropped;
    # lory keeps nothing -> no row; "green" counted over senses and repeats, case-folded.
    assert rows == [
        ("parrot", "green", 3),
        ("parrot", "copy", 1),
        ("parrot", "mimic", 1),
        ("kea", "olive", 1),
    ]


def test_wordnet_phrases_split_definitions():
    assert wordnet_phrases([("a.n.01", "Tall bird; long legs."), ("b.n.01", "")]) == {
        "a.n.01": ["tall bird", "long legs"],
        "b.n.01": [],
    }


# --------------------------------------------------------------------------------------- end to end


def test_openai_backend_end_to_end_then_cache(tmp_path, llm, vocabulary, candidates, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    params = params_for(tmp_path, llm)
    with log_to(tmp_path / "logs" / "describe.log", level=logging.DEBUG):
        out = describe_candidates(candidates, vocabulary, params, progress=True)
    assert list(out.columns) == ["cluster", "name", "phrase", "count", "source"]
    assert set(out["source"]) == {"llm"}
    assert out["cluster"].dtype == "int64" and out["count"].dtype == "int64"
    assert as_rows(out) == EXPECTED
    assert "harrier" not in set(out["name"])  # nothing discriminative left for it
    assert len(llm.requests) == 2 * 3
    assert {r["path"] for r in llm.requests} == {"/v1/chat/completions"}
    assert {r["authorization"] for r in llm.requests} == {f"Bearer {KEY}"}
    body = llm.requests[0]["body"]
    assert body["model"] == "test-model" and body["temperature"] == 0.7
    assert [m["role"] for m in body["messages"]] == ["user"]
    with AnswerCache(params.cache_path) as cache:
        assert len(cache) == 6
        prompt = body["messages"][0]["content"]
        assert cache.get("test-model", prompt, 0.7, 0) is not None
        assert cache.get("other-model", prompt, 0.7, 0) is None

    # second run: everything from the cache, no request, and no key needed
    caplog.clear()
    again = describe_candidates(candidates, vocabulary, params, progress=False)
    assert len(llm.requests) == 6
    pd.testing.assert_frame_equal(again, out)
    # cache-only gives the same result without touching the network
    cached = describe_candidates(
        candidates, vocabulary, params_for(tmp_path, llm, backend="cache-only"), progress=False
    )
    pd.testing.assert_frame_equal(cached, out)
    assert len(llm.requests) == 6

    captured = capsys.readouterr()
    assert_no_key_anywhere(tmp_path, caplog, captured.out, captured.err)


def test_cached_answers_need_no_key(tmp_path, llm, vocabulary, candidates, monkeypatch):
    params = params_for(tmp_path, llm)
    first = describe_candidates(candidates, vocabulary, params, progress=False)
    monkeypatch.delenv(KEY_ENV)
    pd.testing.assert_frame_equal(describe_candidates(candidates, vocabulary, params, progress=False), first)
    assert len(llm.requests) == 6


def test_identical_candidate_lists_share_one_prompt(tmp_path, llm, vocabulary):
    cands = make_candidates(
        vocabulary, {0: ["parrot", "cockatoo", "macaw"], 1: ["parrot", "cockatoo", "macaw"]}
    )
    out = describe_candidates(cands, vocabulary, params_for(tmp_path, llm), progress=False)
    assert len(llm.requests) == 3
    zero = [r[1:] for r in as_rows(out) if r[0] == 0]
    one = [r[1:] for r in as_rows(out) if r[0] == 1]
    assert zero == one == [r[1:] for r in EXPECTED if r[0] == 0]


def test_malformed_answers_are_reasked(tmp_path, llm, vocabulary, candidates, caplog):
    llm.script("malformed", "malformed")
    with caplog.at_level(logging.INFO, logger="s3a"):
        out = describe_candidates(candidates, vocabulary, params_for(tmp_path, llm), progress=False)
    assert as_rows(out) == EXPECTED
    assert len(llm.requests) == 6 + 2
    assert any("re-asking" in r.getMessage() for r in caplog.records)
    assert any("2 re-asks" in r.getMessage() for r in caplog.records)
    with AnswerCache(params_for(tmp_path, llm).cache_path) as cache:
        assert len(cache) == 6  # only valid answers are stored


def test_reasks_exhausted_names_the_cluster(tmp_path, llm, vocabulary):
    llm.script(*["malformed"] * 10)
    cands = make_candidates(vocabulary, {7: ["parrot", "macaw"]})
    params = params_for(tmp_path, llm, repeats=1, max_reasks=2, max_concurrency=1)
    with pytest.raises(DescribeError, match=r"cluster 7.*missing concept") as info:
        describe_candidates(cands, vocabulary, params, progress=False)
    assert "3 tries" in str(info.value)
    assert len(llm.requests) == 3  # the first ask and two re-asks
    with AnswerCache(params.cache_path) as cache:
        assert len(cache) == 0


@pytest.mark.slow  # about 2 s of real time-outs and back-off
def test_rate_limit_server_error_and_timeout_are_retried(tmp_path, llm, vocabulary, candidates, caplog):
    # the handler thread sleeps on after the client gave up; it does not block teardown
    llm.hang_s = 8.0
    llm.script(429, 500, "hang")
    params = params_for(tmp_path, llm, timeout_s=1.0, max_concurrency=2)
    with caplog.at_level(logging.INFO, logger="s3a"):
        out = describe_candidates(candidates, vocabulary, params, progress=False)
    returned = time.monotonic()
    assert as_rows(out) == EXPECTED
    assert len(llm.requests) == 6 + 3
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "rate limited (429)" in messages
    assert "server error (500)" in messages
    assert "timed out after 1 s" in messages
    assert "9 requests made" in messages and "3 retries" in messages
    # the client gave up on the hung request and finished without its answer: it returned while the
    # server was still "generating" (the third request took the hang), not after the whole run's time
    # on a loaded machine, which a wall-clock bound would measure
    assert returned < llm.requests[2]["arrived"] + llm.hang_s


def test_the_client_retries_with_the_configured_backoff(tmp_path, llm, vocabulary):
    # backoff_s * 2^(k-1) capped at backoff_max_s, with jitter down to half: 3 retries sleep
    # 0.15..0.3 s each; the client's own formula (0.5 s doubling) would sleep 2.6 s or more
    llm.script(500, 500, 500)
    cands = make_candidates(vocabulary, {7: ["parrot", "macaw"]})
    params = params_for(tmp_path, llm, repeats=1, max_concurrency=1, backoff_s=0.3, backoff_max_s=0.3)
    start = time.perf_counter()
    describe_candidates(cands, vocabulary, params, progress=False)
    elapsed = time.perf_counter() - start
    assert len(llm.requests) == 4
    assert 0.45 <= elapsed < 2.0


def test_backoff_doubles_to_its_cap_and_honours_retry_after(tmp_path):
    from s3a.discover.describe.client import _OpenAIRunner

    runner = _OpenAIRunner(DescribeParams(backoff_s=1.0, backoff_max_s=5.0), cache=None)
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)):
        assert all(full / 2 <= runner._backoff(attempt) <= full for _ in range(20))
    assert runner._backoff(1, {"retry-after": "3"}) == 3.0  # longer than the back-off: the server's
    assert runner._backoff(1, {"retry-after": "60"}) == 5.0  # up to backoff_max_s
    assert runner._backoff(1, {"retry-after": "soon"}) <= 1.0  # unreadable: ignored


def test_retries_exhausted_keep_received_answers(tmp_path, llm, vocabulary, candidates):
    llm.script("good", "good", *[500] * 10)
    params = params_for(tmp_path, llm, max_concurrency=1, max_retries=1)
    with pytest.raises(
        DescribeError, match=r"after 2 attempt\(s\); last failure: server error \(500\)"
    ) as info:
        describe_candidates(candidates, vocabulary, params, progress=False)
    assert llm.url in str(info.value) and "rerun requests only the missing" in str(info.value)
    assert len(llm.requests) == 4  # two answers, one request and its one retry
    with AnswerCache(params.cache_path) as cache:
        assert len(cache) == 2
    # the endpoint recovers: a rerun pays only for the four missing answers
    llm.queue.clear()
    out = describe_candidates(candidates, vocabulary, params, progress=False)
    assert as_rows(out) == EXPECTED
    assert len(llm.requests) == 4 + 4


def test_unreachable_endpoint_names_base_url(tmp_path, vocabulary, candidates, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    params = params_for(tmp_path, None, base_url=url, max_retries=2, max_concurrency=1)
    with pytest.raises(DescribeError, match="connection error") as info:
        describe_candidates(candidates, vocabulary, params, progress=False)
    message = str(info.value)
    assert url in message and "after 3 attempt(s)" in message and "reachable" in message
    assert KEY not in message


def test_rejected_key_is_not_retried_and_not_echoed(tmp_path, llm, vocabulary, candidates, caplog):
    caplog.set_level(logging.DEBUG)
    llm.script(401, 401, 401)
    params = params_for(tmp_path, llm, max_concurrency=1)
    with (
        log_to(tmp_path / "logs" / "describe.log", level=logging.DEBUG),
        pytest.raises(DescribeError) as info,
    ):
        describe_candidates(candidates, vocabulary, params, progress=False)
    message = str(info.value)
    assert "rejected the key (401)" in message and KEY_ENV in message
    assert len(llm.requests) == 1
    assert info.value.__cause__ is None
    assert_no_key_anywhere(tmp_path, caplog, message, repr(info.value))


def test_other_client_errors_are_reported_with_the_key_masked(tmp_path, llm, vocabulary, candidates):
    llm.script(400)
    params = params_for(tmp_path, llm, max_concurrency=1)
    with pytest.raises(DescribeError, match=r"refused the request for cluster 0 \(400\)") as info:
        describe_candidates(candidates, vocabulary, params, progress=False)
    assert KEY not in str(info.value) and "provided: ***" in str(info.value)
    assert len(llm.requests) == 1


def test_missing_key_names_the_variable(tmp_path, llm, vocabulary, candidates, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(DescribeError, match=f"environment variable {KEY_ENV}"):
        describe_candidates(candidates, vocabulary, params_for(tmp_path, llm), progress=False)
    assert llm.requests == []


def test_cache_only_with_missing_answers_fails_clearly(tmp_path, llm, vocabulary, candidates):
    params = params_for(tmp_path, llm, backend="cache-only")
    with pytest.raises(
        DescribeError, match=r"6 of 6 answers are not in the cache.*clusters \[0, 5\].*'openai'"
    ):
        describe_candidates(candidates, vocabulary, params, progress=False)
    # one answer short: still an error, naming only what is missing
    describe_candidates(candidates, vocabulary, params_for(tmp_path, llm, repeats=2), progress=False)
    with pytest.raises(DescribeError, match="2 of 6 answers"):
        describe_candidates(candidates, vocabulary, params, progress=False)
    assert len(llm.requests) == 4


def test_wordnet_backend_is_offline_and_deterministic(tmp_path, vocabulary, candidates, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    params = params_for(tmp_path, None, backend="wordnet", base_url="http://127.0.0.1:9/v1")
    first = describe_candidates(candidates, vocabulary, params, progress=False)
    second = describe_candidates(candidates.iloc[::-1], vocabulary, params, progress=False)
    pd.testing.assert_frame_equal(first, second)
    assert as_rows(first) == [
        (0, "parrot", "a person who copies others", 1),
        (0, "parrot", "tropical bird with a hooked beak", 1),
        (0, "cockatoo", "from australia", 1),
        (0, "cockatoo", "white crested parrot", 1),
        (0, "macaw", "bright plumage", 1),
        (0, "macaw", "long-tailed parrot of tropical america", 1),
        (5, "beagle", "small hound with a tricolour coat", 1),
        (5, "basset", "hound with short legs and long ears", 1),
        (5, "basset", "slow tracker", 1),
    ]  # "used for hunting hares" (beagle and harrier) and "basset" (a candidate name) dropped
    assert not (tmp_path / "resources").exists()  # no cache needed


def test_empty_candidates_and_bad_inputs(tmp_path, vocabulary):
    params = params_for(tmp_path, None, backend="wordnet")
    empty = describe_candidates(make_candidates(vocabulary, {}), vocabulary, params, progress=False)
    assert empty.empty and list(empty.columns) == ["cluster", "name", "phrase", "count", "source"]
    bad = pd.DataFrame({"cluster": [0], "rank": [0], "vocab_index": [99], "vote_fraction": [1.0]})
    with pytest.raises(ValueError, match="99"):
        describe_candidates(bad, vocabulary, params, progress=False)
    with pytest.raises(ValueError, match="rank"):
        describe_candidates(bad.drop(columns="rank"), vocabulary, params, progress=False)


# ------------------------------------------------------------------------------------------- params


def test_params_defaults_follow_the_spec():
    p = DescribeParams()
    assert (p.backend, p.model, p.temperature, p.repeats) == ("openai", "gpt-3.5-turbo", 0.7, 3)
    assert (p.max_concurrency, p.timeout_s, p.max_retries, p.backoff_s, p.max_reasks) == (8, 60.0, 5, 1.0, 3)
    assert p.api_key_env == "OPENAI_API_KEY" and p.base_url is None
    assert (p.prompt_style, p.max_tokens, p.on_failure) == ("official", 2048, "fail")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("backend", "gpt"),
        ("base_url", "localhost:8000"),
        ("model", ""),
        ("temperature", -0.1),
        ("temperature", 2.5),
        ("repeats", 0),
        ("repeats", 1.5),
        ("repeats", True),
        ("max_concurrency", 0),
        ("timeout_s", 0),
        ("max_retries", -1),
        ("backoff_s", -1.0),
        ("backoff_max_s", 0.5),  # below backoff_s = 1.0
        ("max_reasks", -1),
        ("cache_path", ""),
        ("prompt_style", "fancy"),
        ("max_tokens", 0),
        ("on_failure", "retry"),
        ("official_notebook", ""),
    ],
)
def test_params_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DescribeParams(**{field: value})


def test_params_never_echo_a_key_put_in_api_key_env():
    with pytest.raises(ValueError, match="api_key_env") as info:
        DescribeParams(api_key_env=KEY)
    assert KEY not in str(info.value)


# ----------------------------------------------------------------------- official prompt style (spec 5.4)


@pytest.fixture(scope="module")
def real_vocabulary() -> pd.DataFrame:
    """Real vocabulary entries (real wnids, WordNet glosses) for the official prompt style."""
    from s3a.vocab import build_vocabulary

    vocab = build_vocabulary()
    keep = vocab[vocab["name"].isin(["cockatoo", "crane", "macaw", "parrot"])].reset_index(drop=True)
    return keep.assign(vocab_index=range(len(keep)))


#: A stand-in for the authors' template2 (tests/unit/test_describe_official.py checks the real one)
STAND_IN = OfficialTemplate("Q: (worked example)\nGiven visual concepts: ", "Goal: (instruction)\nA:")


@pytest.fixture
def stand_in(monkeypatch):
    """The official style with :data:`STAND_IN` in place of the authors' notebook (never downloaded)."""
    monkeypatch.setattr("s3a.discover.describe.driver.official_template", lambda *args, **kwargs: STAND_IN)
    return STAND_IN


def test_official_prompt_uses_wordnet_sense_names(real_vocabulary):
    from s3a.discover.describe import official_concepts

    crane = real_vocabulary.set_index("name").loc["crane"]
    concepts = official_concepts(list(crane.synset_ids), list(crane.definitions))
    # WordNet numbers the machine 4 and the bird 5; the vocabulary entry (wnid order) lists the bird
    # first, and so did the authors' prompts
    assert [label for label, _ in concepts] == ["crane.n.05", "crane.n.04"]
    assert concepts[1][1].startswith("lifts and moves heavy objects")
    prompt = build_prompt(concepts, template=STAND_IN)  # official is the default style
    assert prompt == build_prompt(concepts, "official", STAND_IN) != build_prompt(concepts, style="clean")
    assert prompt.startswith(STAND_IN.prefix + "'crane.n.05: large long-necked wading bird")
    assert "', 'crane.n.04: lifts and moves heavy objects;" in prompt
    assert prompt.endswith(".'" + STAND_IN.suffix)
    assert prompt_labels(prompt) == ["crane.n.05", "crane.n.04"]
    with pytest.raises(KeyError, match="n00000001"):
        official_concepts(["n00000001"], ["made up"])


def test_official_style_end_to_end_with_model_id_in_metadata(tmp_path, llm, real_vocabulary, stand_in):
    from s3a.io import read_table, write_table

    llm.served_model, llm.plain = "served-model-2026-01", True
    cands = make_candidates(real_vocabulary, {3: ["crane", "parrot", "macaw"]})
    params = params_for(tmp_path, llm, prompt_style="official")
    out = describe_candidates(cands, real_vocabulary, params, progress=False)
    prompt = llm.requests[0]["body"]["messages"][0]["content"]
    assert prompt.startswith(stand_in.prefix) and prompt.endswith(stand_in.suffix)
    assert prompt_labels(prompt) == ["crane.n.05", "crane.n.04", "parrot.n.01", "parrot.n.02", "macaw.n.01"]
    # the answer is lower-cased: "Hooked beak" (parrot.n.02) and "hooked beak" (parrot.n.01) pool
    assert as_rows(out)[:5] == [
        (3, "crane", "hook on a cable", 3),
        (3, "crane", "long neck", 3),
        (3, "crane", "steel boom", 3),
        (3, "crane", "wading in a marsh", 3),
        (3, "parrot", "hooked beak", 6),
    ]
    assert set(out["source"]) == {"llm"}
    assert out.attrs["llm_model"] == "test-model" and out.attrs["prompt_style"] == "official"
    assert out.attrs["llm_models_reported"] == ["served-model-2026-01"]
    write_table(out, tmp_path / "descriptions.parquet")
    assert read_table(tmp_path / "descriptions.parquet").attrs["llm_models_reported"] == [
        "served-model-2026-01"
    ]
    # from the cache the reported id is still known
    again = describe_candidates(cands, real_vocabulary, params, progress=False)
    assert len(llm.requests) == 3 and again.attrs["llm_models_reported"] == ["served-model-2026-01"]


def test_official_requery_rule_reasks_until_every_candidate_keeps_a_phrase(
    tmp_path, llm, real_vocabulary, caplog, stand_in
):
    cands = make_candidates(real_vocabulary, {0: ["cockatoo", "macaw"]})
    llm.plain = True
    # three answers in which every concept gets the same phrases: nothing discriminative survives the
    # pooling, so all three are asked again (cell 16's rule: the answers of a cluster are judged together)
    llm.script("shared", "shared", "shared")
    with caplog.at_level(logging.INFO, logger="s3a"):
        out = describe_candidates(
            cands, real_vocabulary, params_for(tmp_path, llm, prompt_style="official"), progress=False
        )
    assert len(llm.requests) == 3 + 3
    assert "official re-query rule" in caplog.text
    assert set(out["name"]) == {"cockatoo", "macaw"}
    # the clean style accepts such answers (every concept has a phrase), and the candidates lose them
    llm.script("shared", "shared", "shared")
    clean = describe_candidates(
        cands,
        real_vocabulary,
        params_for(tmp_path / "clean", llm, prompt_style="clean", repeats=3),
        progress=False,
    )
    assert len(llm.requests) == 6 + 3 and clean.empty


# ------------------------------------------------------------------- weak local servers (issue 15)


def test_default_max_tokens_fits_the_longest_answer_measured_on_the_worked_example():
    from s3a.discover.describe import DEFAULT_MAX_TOKENS, example_answer_tokens
    from s3a.vocab import build_vocabulary

    senses = sorted(build_vocabulary()["definitions"].map(len), reverse=True)
    longest_answer = sum(senses[:3]) * max(example_answer_tokens())
    assert sum(senses[:3]) == 18 and max(example_answer_tokens()) == 34
    assert DescribeParams().max_tokens == DEFAULT_MAX_TOKENS >= 3 * longest_answer


def test_rambling_server_answers_because_max_tokens_is_sent(tmp_path, llm, vocabulary, candidates):
    llm.ramble, llm.hang_s = True, 3.0
    params = params_for(tmp_path, llm, timeout_s=1.0, max_retries=1)
    out = describe_candidates(candidates, vocabulary, params, progress=False)
    assert as_rows(out) == EXPECTED
    assert len(llm.requests) == 6
    assert {r["body"]["max_tokens"] for r in llm.requests} == {params.max_tokens}


def test_answer_cut_at_max_tokens_is_invalid_and_reasked(tmp_path, llm, vocabulary, caplog):
    llm.ramble = True
    cands = make_candidates(vocabulary, {7: ["parrot", "macaw"]})
    params = params_for(tmp_path, llm, repeats=1, max_reasks=2, max_concurrency=1, max_tokens=8)
    cut = r"cluster 7.*finish_reason 'length'\) by llm.max_tokens=8 or by the server's context window"
    with pytest.raises(DescribeError, match=cut + r".*--ctx-size.*set llm.on_failure: wordnet"):
        describe_candidates(cands, vocabulary, params, progress=False)
    assert len(llm.requests) == 3 and {r["body"]["max_tokens"] for r in llm.requests} == {8}
    with AnswerCache(params.cache_path) as cache:
        assert len(cache) == 0


@pytest.mark.slow  # about 3.5 s of real time-outs
def test_single_slot_server_slower_than_timeout_falls_back_to_concurrency_one(
    tmp_path, llm, vocabulary, candidates, caplog
):
    llm.slot_s = 0.3  # one answer at a time; 4 queued requests wait longer than the 1 s time-out
    params = params_for(tmp_path, llm, timeout_s=1.0, max_concurrency=4, max_retries=3)
    with caplog.at_level(logging.INFO, logger="s3a"):
        out = describe_candidates(candidates, vocabulary, params, progress=False)
    assert as_rows(out) == EXPECTED
    # each of the first requests can time out once at most; after that they go one at a time
    assert 6 <= len(llm.requests) <= 6 + 4
    assert "concurrency lowered from 4 to 1" in caplog.text
    assert "concurrency at the end 1" in caplog.text


def test_garbage_for_one_cluster_falls_back_to_wordnet(tmp_path, llm, vocabulary, candidates, caplog, capsys):
    from s3a.discover.describe import wordnet_fallback_clusters

    llm.garbage_labels = {"beagle.n.01"}  # cluster 5 never gets a valid answer
    params = params_for(tmp_path, llm, on_failure="wordnet", max_reasks=2)
    with caplog.at_level(logging.INFO, logger="s3a"):
        out = describe_candidates(candidates, vocabulary, params, progress=True)
    # the progress bar counts answers only: cluster 0's 3, with cluster 5's 3 repeats named apart
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "3/3" in bar and "3 fell back to WordNet" in bar, bar
    rows = [(*r, s) for r, s in zip(as_rows(out), out["source"], strict=True)]
    assert [r for r in rows if r[0] == 0] == [(*r, "llm") for r in EXPECTED if r[0] == 0]
    assert [r for r in rows if r[0] == 5] == [
        (5, "beagle", "small hound with a tricolour coat", 1, "wordnet"),
        (5, "basset", "hound with short legs and long ears", 1, "wordnet"),
        (5, "basset", "slow tracker", 1, "wordnet"),
    ]
    assert wordnet_fallback_clusters(out) == [5]
    assert "1 of 2 clusters described by their WordNet definitions" in caplog.text
    assert len(llm.requests) <= 3 + 3 * (1 + 2)
    with AnswerCache(params.cache_path) as cache:
        assert len(cache) == 3  # cluster 0's answers only: a rerun asks again for cluster 5
    # with the reproduction setting the same server stops the run, naming the cluster
    with pytest.raises(DescribeError, match=r"cluster 5 \(repeat \d\).*missing concept"):
        describe_candidates(candidates, vocabulary, params_for(tmp_path, llm, max_reasks=2), progress=False)


def test_auth_errors_still_stop_with_wordnet_fallback(tmp_path, llm, vocabulary, candidates):
    llm.script(401)
    params = params_for(tmp_path, llm, on_failure="wordnet", max_concurrency=1)
    with pytest.raises(DescribeError, match=r"rejected the key \(401\)"):
        describe_candidates(candidates, vocabulary, params, progress=False)


def test_adapter_writes_sources_and_metadata(tmp_path, llm, vocabulary, candidates):
    """The rule's script through runpy: the fallback and the server's model id reach the Parquet file."""
    import runpy
    from pathlib import Path
    from types import SimpleNamespace

    from s3a.discover.describe import wordnet_fallback_clusters
    from s3a.io import read_table, write_table

    llm.garbage_labels, llm.served_model = {"beagle.n.01"}, "served-x"
    write_table(candidates, tmp_path / "candidates.parquet")
    write_table(vocabulary, tmp_path / "vocabulary.parquet")
    params = params_for(tmp_path, llm, on_failure="wordnet", max_reasks=1)
    smk = SimpleNamespace(
        input=SimpleNamespace(
            candidates=str(tmp_path / "candidates.parquet"), vocabulary=str(tmp_path / "vocabulary.parquet")
        ),
        output=[str(tmp_path / "descriptions.parquet")],
        log=[str(tmp_path / "describe.log")],
        params=SimpleNamespace(llm=dict(params.__dict__)),
    )
    script = Path(__file__).resolve().parents[2] / "workflow" / "scripts" / "describe_candidates.py"
    runpy.run_path(str(script), run_name="adapter")["main"](smk)
    out = read_table(tmp_path / "descriptions.parquet")
    assert set(out.loc[out.cluster == 5, "source"]) == {"wordnet"}
    assert set(out.loc[out.cluster == 0, "source"]) == {"llm"}
    assert wordnet_fallback_clusters(out) == [5] and out.attrs["llm_models_reported"] == ["served-x"]
    assert "clusters described by their WordNet definitions" in (tmp_path / "describe.log").read_text()


@pytest.mark.slow  # about 7 s of real time-outs
def test_every_retry_passes_the_gate_on_a_single_slot_server(tmp_path, llm, vocabulary):
    """8 requests in flight, one generation at a time taking 0.6x the time-out: 7 time out at once.

    Before each attempt had to pass the gate, the 7 retried together inside their slots, queued behind
    the abandoned generations and timed out again until their retries ran out. Now, after the first
    time-out, one attempt at a time is out (no two requests overlap at the server's door).
    """
    llm.slot_s = 0.3
    clusters = {c: [name] for c, name in enumerate(["basset", "beagle", "cockatoo", "macaw"])}
    params = params_for(
        tmp_path, llm, timeout_s=0.5, max_concurrency=8, max_retries=4, repeats=2, on_failure="fail"
    )
    out = describe_candidates(make_candidates(vocabulary, clusters), vocabulary, params, progress=False)
    assert sorted(set(out["cluster"])) == [0, 1, 2, 3] and set(out["source"]) == {"llm"}
    arrivals = sorted(r["arrived"] for r in llm.requests)
    first_wave, retries = arrivals[:8], arrivals[8:]
    assert first_wave[-1] - first_wave[0] < params.timeout_s  # the 8 went out together
    assert retries, "expected time-outs and retries"
    # after the first time-out each attempt waits for the previous one: arrivals at least a slot apart
    gaps = [b - a for a, b in zip(retries, retries[1:], strict=False)]
    assert min(gaps, default=1.0) >= 0.25, gaps
    assert len(llm.requests) <= 8 + 7 * 2


class _RecordingProxy(BaseHTTPRequestHandler):
    """A forward HTTP proxy: records each request line, then relays it to the origin server."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        import http.client
        import urllib.parse

        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        target = urllib.parse.urlsplit(self.path)  # a proxy receives the absolute URL
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "host")}
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        conn.request("POST", target.path, body=body, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()


@pytest.mark.parametrize("bypass", [False, True], ids=["through-proxy", "no_proxy"])
def test_proxy_variables_are_honoured(tmp_path, llm, vocabulary, candidates, monkeypatch, bypass):
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingProxy)
    proxy.daemon_threads = True
    proxy.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=proxy.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1" if bypass else "example.invalid")
        out = describe_candidates(candidates, vocabulary, params_for(tmp_path, llm), progress=False)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert as_rows(out) == EXPECTED
    expected_url = f"{llm.url}/chat/completions"
    assert proxy.seen == ([] if bypass else [expected_url] * len(llm.requests)), proxy.seen


def test_environment_proxy_reads_scheme_all_and_no_proxy(monkeypatch):
    from s3a.discover.describe.network import environment_proxy

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert environment_proxy("https://api.openai.com/v1") is None
    monkeypatch.setenv("ALL_PROXY", "http://all:3128")
    assert environment_proxy("https://api.openai.com/v1") == "http://all:3128"
    monkeypatch.setenv("HTTPS_PROXY", "http://squid:3128")
    assert environment_proxy("https://api.openai.com/v1") == "http://squid:3128"
    monkeypatch.setenv("NO_PROXY", ".openai.com,localhost")
    assert environment_proxy("https://api.openai.com/v1") is None
    assert environment_proxy("http://gpu-node:8000/v1") == "http://all:3128"


def test_journal_mode_is_delete_on_a_network_filesystem(tmp_path):
    from s3a.discover.describe.cache import filesystem_type, journal_mode

    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\n"
        "fs:/export/home /home nfs4 rw,relatime 0 0\n"
        "10.0.0.1@o2ib:/scratch /scratch lustre rw 0 0\n"
        "/dev/sdb1 /home/lab/local xfs rw 0 0\n"
        "sshfs#me@host: /mnt/my\\040share fuse.sshfs rw 0 0\n"
    )
    m = str(mounts)
    assert filesystem_type("/home/lab/results/cache.sqlite", m) == "nfs4"
    assert filesystem_type("/home/lab/local/x/cache.sqlite", m) == "xfs"  # the longest mount point
    assert filesystem_type("/mnt/my share/c.sqlite", m) == "fuse.sshfs"
    assert filesystem_type("/homes/c.sqlite", m) == "ext4"  # /home is not a prefix of /homes
    assert [journal_mode(p, "auto", m) for p in ("/home/a/c", "/scratch/c", "/mnt/my share/c", "/tmp/c")] == [
        "delete",
        "delete",
        "delete",
        "wal",
    ]
    assert journal_mode("/home/a/c", "wal", m) == "wal" and journal_mode("/tmp/c", "delete", m) == "delete"
    assert filesystem_type("/x", str(tmp_path / "absent")) == ""


_WRITER = """
import sys
from s3a.discover.describe import AnswerCache
path, journal, who = sys.argv[1], sys.argv[2], sys.argv[3]
with AnswerCache(path, journal) as cache:
    for i in range(150):
        cache.put("m", f"prompt {who} {i}", 0.7, 0, f"answer {who} {i}")
"""


@pytest.mark.slow  # two Python processes, 150 committed writes each
@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_two_processes_writing_one_cache_lose_no_answer(tmp_path, journal):
    import subprocess
    import sys

    path = tmp_path / "resources" / "llm_cache.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), journal, who]) for who in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with AnswerCache(path, journal) as cache:
        assert len(cache) == 300
        assert cache.get("m", "prompt b 149", 0.7, 0) == "answer b 149"
        mode = cache._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == journal
