"""Parameters, constants and errors of the describe step (spec 5.4)."""

from __future__ import annotations

import logging
from typing import get_args

from pydantic import model_validator

from s3a.config import LLM
from s3a.logs import UserError

log = logging.getLogger(__name__)

BACKENDS = get_args(LLM.model_fields["backend"].annotation)
PROMPT_STYLES = get_args(LLM.model_fields["prompt_style"].annotation)
ON_FAILURE = get_args(LLM.model_fields["on_failure"].annotation)
SOURCES = ("llm", "wordnet")
DEFAULT_ENDPOINT = "https://api.openai.com/v1"
OUTPUT_COLUMNS = ["cluster", "name", "phrase", "count", "source"]
#: Default answer cap. Measured on the ``clean`` worked example (:func:`example_answer_tokens`): its
#: longest concept line is 34 BPE tokens; the longest candidate list of the vocabulary has 7 + 6 + 5 =
#: 18 senses (``queen``, ``jack``, ``mate``), so the longest valid answer of the example's density is
#: about 18 x 34 = 612 tokens. 2048 leaves a 3x margin for models that list more phrases per concept.
#: (The authors' own gpt-3.5 answers for three datasets are at most 459 CLIP BPE tokens.)
DEFAULT_MAX_TOKENS = LLM.model_fields["max_tokens"].default


class DescribeError(UserError, RuntimeError):
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
        max_reasks: new requests after an invalid answer before giving up; in the official style also
            the rounds of asking all of a cluster's answers again when a candidate keeps no phrase.
        api_key_env: name of the environment variable holding the key (never the key itself).
        cache_path: SQLite file of the answer cache (keep it under ``resources/``, not in an output).
        cache_journal: SQLite journal mode of the cache: ``wal``, ``delete`` or ``auto`` (``delete`` on
            a network filesystem, where WAL is unsafe; see :func:`~s3a.discover.describe.cache.journal_mode`).
        prompt_style: ``official`` (the authors' ``template2`` with WordNet's own sense numbers,
            ``crane.n.04``, read from their notebook at run time; answers read and re-asked as cell 16
            of the notebook does: :func:`~s3a.discover.describe.official_answer`,
            :func:`~s3a.discover.describe.official_phrases`) or ``clean`` (the project's own wording,
            senses numbered within the vocabulary entry, tolerant parsing, an answer is valid when
            every concept has a phrase).
        official_notebook: a local copy of the authors' notebook (the offline source of the official
            prompt; :mod:`s3a.discover.describe.official`); ``None`` = download it once and cache the
            template beside ``cache_path``.
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
