"""Prompt: discriminative visual phrases for each cluster's candidate names (spec 5.4).

Each cluster ``c`` comes with its top candidate names (``candidates.parquet``: ``cluster``, ``rank``,
``vocab_index``, ``vote_fraction``). Every candidate is expanded to all synsets merged under its
vocabulary name and one one-shot prompt per cluster (:func:`build_prompt`) asks an LLM for visual
descriptive phrases of every synset. The prompt is sent ``repeats`` times (independent samples at
``temperature``, at most ``max_tokens`` each; an answer cut at ``max_tokens`` is re-asked). Two prompt
styles (``DescribeParams.prompt_style``):

* ``official``: the authors' run, exactly. The prompt is ``template2`` of their notebook applied to the
  concept list built as their cell 13 builds it (:func:`official_concept_list`: WordNet's own sense
  names such as ``crane.n.04``, :func:`s3a.vocab.wordnet_sense_name`); its text is read from the
  notebook at run time (:mod:`s3a.discover.describe.official`), never shipped. Answers are read as their
  cell 16 reads them (:func:`official_answer`: one line per requested synset, in order; phrases split
  on ``"; "`` and kept as raw text), an answer that fails that check is asked again alone, and the 3
  answers of a cluster are pooled (:func:`official_phrases`); when a candidate keeps no phrase, all the
  cluster's answers are asked again.
* ``clean``: the project's own wording (senses numbered within the vocabulary entry,
  :func:`s3a.vocab.synset_label`), the tolerant :func:`parse_answer` (bullets, bold keys, case,
  underscores, trailing periods; phrases de-duplicated within an answer) and :func:`aggregate_phrases`;
  an answer is valid when every concept has a phrase.

Both styles give rows ``(cluster, name, phrase, count, source)`` that the realign step (spec 5.5)
embeds and scores. Re-asks are bounded by ``max_reasks``, after which ``on_failure`` decides.

Backends (``DescribeParams.backend``):

* ``openai``: any OpenAI-compatible chat-completions endpoint through the ``openai`` client. The key
  is read from ``os.environ[api_key_env]`` when (and only when) a request has to be made; it is never
  logged, cached or put in an error message. Answers are cached in SQLite (:class:`AnswerCache`) as
  soon as each valid one arrives, so an interrupted run loses nothing and a rerun pays only for the
  missing answers. Rate limits (429), server errors (5xx), time-outs and connection errors are retried
  by the client (``max_retries``) with our exponential back-off and jitter. Every attempt, retries
  included, passes one gate (:mod:`~s3a.discover.describe.network`): after the endpoint's first
  time-out one attempt at a time is out, and every time-out pauses all requests for ``timeout_s`` plus
  the back-off (a single-slot server is still generating the abandoned answer). The proxy variables
  (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) are honoured. When retries or re-asks are exhausted
  for a cluster, ``on_failure`` decides: ``fail`` stops the step naming the cluster; ``wordnet``
  describes it by its WordNet definitions (``source = "wordnet"``), caches nothing for it, and goes
  on (``--forcerun describe_candidates`` asks for those clusters again, the cached answers reused).
* ``cache-only``: the same prompts answered from the cache alone; never touches the network.
* ``wordnet``: offline and deterministic, no LLM: each synset's WordNet definition, split on ``;``,
  serves as its phrases. Used by the demo configuration and wherever no endpoint is available.

Post-processing (per cluster) of the ``clean`` style: the key of an answer line is mapped back to the
candidate's vocabulary name (senses of one name merge; the spec's "synset name up to the first dot",
done through the label table so names that contain a dot, such as ``st._augustine_grass``, stay whole);
phrases are pooled over the repeats keeping multiplicity; phrases equal to a candidate name of the
cluster are dropped (compared lower-case, underscores as spaces); phrases that occur under more than
one name of the cluster are dropped; ``count`` is the number of occurrences. The ``official`` style does
the same on the raw texts, keyed as the notebook keys them (:func:`official_phrases`). A candidate left
with no phrase has no row: the realign step treats it as unscored.
"""

from __future__ import annotations

from s3a.discover.describe.cache import AnswerCache
from s3a.discover.describe.driver import describe_candidates, wordnet_fallback_clusters
from s3a.discover.describe.official import OfficialTemplate, official_template
from s3a.discover.describe.params import (
    BACKENDS,
    DEFAULT_ENDPOINT,
    DEFAULT_MAX_TOKENS,
    ON_FAILURE,
    OUTPUT_COLUMNS,
    PROMPT_STYLES,
    SOURCES,
    ClusterFailure,
    DescribeError,
    DescribeParams,
    InvalidAnswer,
)
from s3a.discover.describe.parsing import (
    aggregate_phrases,
    official_answer,
    official_phrases,
    parse_answer,
    validate_answer,
    wordnet_phrases,
)
from s3a.discover.describe.prompt import (
    build_prompt,
    candidate_concepts,
    example_answer_tokens,
    official_concept_list,
    official_concepts,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_ENDPOINT",
    "DEFAULT_MAX_TOKENS",
    "ON_FAILURE",
    "OUTPUT_COLUMNS",
    "PROMPT_STYLES",
    "SOURCES",
    "AnswerCache",
    "ClusterFailure",
    "DescribeError",
    "DescribeParams",
    "InvalidAnswer",
    "OfficialTemplate",
    "aggregate_phrases",
    "build_prompt",
    "candidate_concepts",
    "describe_candidates",
    "example_answer_tokens",
    "official_answer",
    "official_concept_list",
    "official_concepts",
    "official_phrases",
    "official_template",
    "parse_answer",
    "validate_answer",
    "wordnet_fallback_clusters",
    "wordnet_phrases",
]
