"""The HTTP side: the ``openai`` client (which retries) with bounded concurrency, re-asks, key scrubbing."""

from __future__ import annotations

import logging
import os
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm.auto import tqdm

from s3a.discover.describe.cache import AnswerCache
from s3a.discover.describe.network import _Gate, _hide_userinfo, _Stop, environment_proxy
from s3a.discover.describe.params import (
    DEFAULT_ENDPOINT,
    ClusterFailure,
    DescribeError,
    DescribeParams,
    InvalidAnswer,
)
from s3a.discover.describe.parsing import _Prompt, validate_answer

log = logging.getLogger(__name__)


class _Skip(Exception):
    """Raised inside a worker whose prompt has already failed (``on_failure: wordnet``)."""


class _OpenAIRunner:
    """Sends the missing requests through the ``openai`` client, which retries them (``max_retries``,
    with the back-off of :meth:`_backoff`); we add the re-asks, the gate and the key scrubbing.

    Every HTTP attempt passes through :meth:`_send` (a transport under the client's HTTP client): it
    counts requests and retries, logs each failed attempt naming the cluster, and after a time-out
    lowers the concurrency to 1 and waits ``timeout_s`` before the client's retry.
    """

    _RETRYABLE_NAMES = ("RateLimitError", "InternalServerError", "APITimeoutError", "APIConnectionError")

    def __init__(self, params: DescribeParams, cache: AnswerCache) -> None:
        self.params = params
        self.cache = cache
        self.endpoint = params.base_url or DEFAULT_ENDPOINT
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._local = threading.local()  # the prompt a worker thread is asking, and its attempts
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
        self._stop.clear()  # the official style runs the runner again for clusters it re-asks
        client = _client(openai, self, key)
        self._retryable = tuple(getattr(openai, n) for n in self._RETRYABLE_NAMES)
        results: dict[tuple[str, int], dict[str, list[str]]] = {}
        bar = tqdm(total=len(jobs), desc="describe: LLM answers", unit="answer", disable=not progress)
        error: BaseException | None = None
        stopped = fallen = 0
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
                if (item := fut.result()) is not None:
                    key_text, repeat, answer = item
                    results[key_text, repeat] = answer
                    bar.update(1)
                else:  # a repeat of a prompt that fell back to WordNet: not an answer
                    fallen += 1
                    bar.total -= 1
                    bar.set_postfix_str(f"{fallen} fell back to WordNet", refresh=True)
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
        """One valid answer for ``(prompt, repeat)``, written to the cache; the client retries failed
        requests, we re-ask after invalid answers."""
        p = self.params
        reasks = 0
        while True:
            if self._stop.is_set():
                raise _Stop()
            if prompt.text in self.failed:
                raise _Skip()
            self._local.prompt, self._local.attempts = prompt, 0
            try:  # every HTTP attempt, retries included, passes the gate (in _send)
                response = client.chat.completions.create(
                    model=p.model,
                    messages=[{"role": "user", "content": prompt.text}],
                    temperature=p.temperature,
                    max_tokens=p.max_tokens,
                )
            except self._retryable as exc:  # the client's retries are spent
                timed_out = isinstance(exc, self._openai.APITimeoutError)
                unreachable = isinstance(exc, self._openai.APIConnectionError) and not timed_out
                error_type = DescribeError if unreachable else ClusterFailure
                raise error_type(
                    f"no answer from the LLM endpoint {self.endpoint} for {prompt.where()} after "
                    f"{self._local.attempts} attempt(s); last failure: {self._describe_failure(exc)}. "
                    "Check that base_url is right, the endpoint is up and reachable from this machine (the "
                    "describe step needs network access; run it on a login node or use backend "
                    "'cache-only' / 'wordnet'), and raise max_retries/timeout_s for a slow endpoint. "
                    f"Answers received so far are kept in {self.cache.path}; a rerun requests only the "
                    "missing ones."
                ) from None
            except self._openai.APIStatusError as exc:
                raise self._status_error(exc, prompt) from None
            choice = response.choices[0] if response.choices else None
            content = (choice.message.content if choice is not None else None) or ""
            try:
                if choice is not None and choice.finish_reason == "length":
                    raise InvalidAnswer(
                        f"answer cut short (finish_reason 'length') by llm.max_tokens={p.max_tokens} or "
                        "by the server's context window (llama.cpp lowers max_tokens to fit its n_ctx: "
                        "start it with a larger --ctx-size); raise llm.max_tokens if valid answers are "
                        "longer"
                    )
                answer = validate_answer(content, prompt.labels, p.prompt_style)
            except InvalidAnswer as exc:
                reasks += 1
                if reasks > p.max_reasks:
                    raise ClusterFailure(
                        f"the LLM gave no valid answer for {prompt.where()} (repeat {repeat}) in "
                        f"{reasks} tries; last problem: {exc}. Expected one line per concept "
                        f"{prompt.labels}; try another model or raise max_reasks"
                        + (
                            ", or set llm.on_failure: wordnet to describe such clusters by their WordNet "
                            "definitions and go on"
                            if p.on_failure == "fail"
                            else ""
                        )
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

    def _send(self, inner, request, http):
        """One HTTP attempt of the client (the transport of :func:`_client` calls this).

        Every attempt, a retry included, waits for a slot of the gate: once the limit has fallen to
        1, a request already in flight retries only when no other one is out. Counts the attempt,
        logs a failure naming the cluster, and after a time-out pauses every request for
        ``timeout_s`` plus the back-off and lowers the concurrency to 1: a single-slot server is
        still generating the abandoned answer, and sending more only queues them behind it until
        they time out too. The client's own retry cannot do this (its delay after a time-out is the
        back-off alone), so the retrying worker waits ``timeout_s`` here first.
        """
        local, p = self._local, self.params
        if self._stop.is_set():  # another worker failed: send nothing more
            raise _Stop()
        local.attempts = getattr(local, "attempts", 0) + 1
        self._count("requests")
        if local.attempts > 1:
            self._count("retries")
        last = local.attempts > p.max_retries
        try:
            with self._gate.slot(self._stop):
                response = inner.handle_request(request)
                response.read()  # the slot covers the whole answer, not only its headers
        except http.TimeoutException:
            self._count("timeouts")
            self._log_attempt(f"timed out after {p.timeout_s:g} s", last)
            old = self._gate.after_timeout(p.timeout_s + self._backoff(local.attempts))
            if old is not None:
                log.warning(
                    "describe: the LLM endpoint %s timed out; concurrency lowered from %d to 1 for "
                    "the rest of this run, and every time-out pauses requests for timeout_s plus "
                    "the back-off so a busy server can finish",
                    self.endpoint,
                    old,
                )
            if not last and self._stop.wait(p.timeout_s):
                raise _Stop() from None
            raise
        except http.TransportError as exc:
            self._log_attempt(f"connection error ({self._scrub(str(exc))})", last)
            raise
        if response.status_code == 429 or response.status_code >= 500:
            what = (
                "rate limited (429)"
                if response.status_code == 429
                else f"server error ({response.status_code})"
            )
            self._log_attempt(what, last)
        return response

    def _log_attempt(self, what: str, last: bool) -> None:
        prompt = getattr(self._local, "prompt", None)
        where = prompt.where() if prompt is not None else self.endpoint
        attempt, retries = self._local.attempts, self.params.max_retries
        if last:
            log.warning("describe: %s: %s; no retry left (%d attempts)", where, what, attempt)
        else:
            log.warning("describe: %s: %s; retry %d/%d", where, what, attempt, retries)

    def _describe_failure(self, exc: Exception) -> str:
        status = getattr(exc, "status_code", None)
        if isinstance(exc, self._openai.APITimeoutError):
            return f"timed out after {self.params.timeout_s:g} s"
        if isinstance(exc, self._openai.APIConnectionError):
            return f"connection error ({self._scrub(str(exc.__cause__ or exc))})"
        if status == 429:
            return "rate limited (429)"
        return f"server error ({status})"

    def _backoff(self, attempt: int, headers=None) -> float:
        """Delay before retry ``attempt`` (1, 2, ...): ``backoff_s * 2^(attempt-1)``, at most
        ``backoff_max_s``, with jitter; a longer ``retry-after`` of the server is honoured, up to
        ``backoff_max_s``."""
        p = self.params
        delay = min(p.backoff_max_s, p.backoff_s * 2 ** (attempt - 1))
        delay *= 0.5 + random.random() / 2  # jitter: spread concurrent retries apart
        try:
            retry_after = float(headers.get("retry-after", "")) if headers is not None else None
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


def _client(openai, runner: _OpenAIRunner, key: str):
    """An ``openai.OpenAI`` client that retries ``max_retries`` times with ``runner``'s back-off, whose
    HTTP attempts all pass through ``runner._send``.

    The client's own delay formula has fixed constants (0.5 s base, 8 s cap); ``llm.backoff_s`` and
    ``llm.backoff_max_s`` are documented settings, so its one delay hook, ``_calculate_retry_timeout``,
    returns :meth:`_OpenAIRunner._backoff` (tests/unit/test_describe.py checks that it is used).
    The client sleeps that delay itself, not interruptibly: a stopped run waits at most
    ``backoff_max_s`` for a worker between two attempts.
    """
    import importlib

    httpx2 = getattr(openai, "DefaultHttpx2Client", None)  # openai >= 3 builds on httpx2, older on httpx
    http = importlib.import_module("httpx2" if httpx2 is not None else "httpx")
    make_http_client = httpx2 or openai.DefaultHttpxClient

    p = runner.params
    proxy = environment_proxy(p.base_url or DEFAULT_ENDPOINT)
    if proxy:
        log.info("describe: requests to %s go through the proxy %s", runner.endpoint, _hide_userinfo(proxy))

    class Watched(http.BaseTransport):
        def __init__(self) -> None:
            # a custom transport makes the HTTP client skip the proxy variables: apply them here
            self.inner = http.HTTPTransport(proxy=proxy)

        def handle_request(self, request):
            return runner._send(self.inner, request, http)

        def close(self) -> None:
            self.inner.close()

    class Client(openai.OpenAI):
        def _calculate_retry_timeout(self, remaining_retries, options, response_headers=None) -> float:
            return runner._backoff(runner._local.attempts, response_headers)

    return Client(
        api_key=key,
        base_url=p.base_url,
        max_retries=p.max_retries,
        timeout=p.timeout_s,
        http_client=make_http_client(transport=Watched()),
    )
