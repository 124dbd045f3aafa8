"""The describe step itself: clusters -> prompts -> answers (cached, requested or WordNet) -> phrase table."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from s3a.discover.describe.cache import AnswerCache
from s3a.discover.describe.client import _OpenAIRunner
from s3a.discover.describe.official import OfficialTemplate, official_template
from s3a.discover.describe.params import (
    OUTPUT_COLUMNS,
    ClusterFailure,
    DescribeError,
    DescribeParams,
    InvalidAnswer,
)
from s3a.discover.describe.parsing import (
    _Prompt,
    aggregate_phrases,
    official_phrases,
    validate_answer,
    wordnet_phrases,
)
from s3a.discover.describe.prompt import build_prompt, candidate_concepts, official_concepts

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------- driver


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
        (requested), ``llm_models_reported`` (the model ids the server reported for the answers used),
        ``wordnet_fallback_clusters`` and ``official_prompt`` (where the authors' prompt came from:
        :attr:`OfficialTemplate.source`; None when no official prompt was built).

    Official style: the prompt is the authors' ``template2`` (:mod:`s3a.discover.describe.official`:
    downloaded once and cached under ``resources/``, or read from ``llm.official_notebook``), every
    answer is read and checked as cell 16 does (:func:`s3a.discover.describe.official_answer`; an
    answer that fails is asked again, alone, at most ``max_reasks`` times), and the answers of a
    cluster are pooled (:func:`s3a.discover.describe.official_phrases`); when a candidate is left with
    no phrase, all the cluster's answers are asked again and checked again, at most ``max_reasks``
    times, after which ``on_failure`` decides. Clean style: :func:`parse_answer` and
    :func:`aggregate_phrases`.

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
        "official_prompt": None,
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
        template: OfficialTemplate | None = None
        if style == "official":
            template = official_template(
                Path(params.cache_path).parent, params.official_notebook, download=params.backend == "openai"
            )
            attrs["official_prompt"] = dict(template.source)
        prompts: dict[str, _Prompt] = {}
        for c in clusters:
            text = build_prompt(c.concepts, style, template)
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
        if source == "llm" and style == "official":
            kept = official_phrases(per_cluster[c.cluster], c.label_names, c.names)[0]
        else:
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
    with AnswerCache(params.cache_path, params.cache_journal) as cache:
        parsed: dict[tuple[str, int], dict[str, list[str]]] = {}
        models: set[str] = set()
        missing: list[tuple[_Prompt, int]] = []
        for prompt in prompts:
            for repeat in range(params.repeats):
                entry = cache.get_entry(params.model, prompt.text, params.temperature, repeat)
                if entry is not None:
                    try:
                        parsed[prompt.text, repeat] = validate_answer(entry[0], prompt.labels, style)
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
        runner = _OpenAIRunner(params, cache)
        if missing:
            received, failed = runner.run(missing, progress)
            parsed.update(received)
        if style == "official":
            failed.update(_official_requery(prompts, params, parsed, failed, runner, progress))
        models |= runner.models
        for prompt in prompts:  # a cluster given up keeps nothing in the cache: a rerun asks again
            if prompt.text in failed:
                for repeat in range(params.repeats):
                    cache.delete(params.model, prompt.text, params.temperature, repeat)
        answers = {
            p.text: [parsed[p.text, r] for r in range(params.repeats)]
            for p in prompts
            if p.text not in failed
        }
        return answers, failed, models


def _official_requery(
    prompts: list[_Prompt],
    params: DescribeParams,
    parsed: dict[tuple[str, int], dict[str, list[str]]],
    failed: dict[str, str],
    runner: _OpenAIRunner,
    progress: bool,
) -> dict[str, str]:
    """Cell 16's check of a cluster's answers together: a candidate left with no phrase re-asks them all.

    Updates ``parsed`` in place. Returns the prompts newly given up under ``on_failure: wordnet``.

    Raises:
        ClusterFailure: a cluster still leaves a candidate without a phrase after ``max_reasks`` rounds
            (``on_failure: fail``).
        DescribeError: ``backend: cache-only``, which cannot ask again.
    """
    repeats = range(params.repeats)
    given_up: dict[str, str] = {}
    empty: dict[str, tuple[_Prompt, list[str]]] = {}
    for round_ in range(params.max_reasks + 1):
        empty = {}
        for prompt in prompts:
            if prompt.text in failed or prompt.text in given_up:
                continue
            answers = [parsed[prompt.text, r] for r in repeats]
            if names := official_phrases(answers, prompt.label_names, prompt.names)[1]:
                empty[prompt.text] = (prompt, names)
        if not empty:
            return given_up
        where = "; ".join(f"{p.where()}: {names}" for p, names in empty.values())
        if params.backend == "cache-only":
            raise DescribeError(
                f"backend 'cache-only': the cached answers leave candidates without a phrase ({where}); "
                "the official rule asks all the answers of such a cluster again, which needs backend 'openai'"
            )
        if round_ == params.max_reasks:
            break
        log.warning(
            "describe: no phrase left for %s after pooling the %d answers; asking all of them again "
            "(official re-query rule, %d/%d)",
            where,
            params.repeats,
            round_ + 1,
            params.max_reasks,
        )
        received, now_failed = runner.run([(p, r) for p, _ in empty.values() for r in repeats], progress)
        parsed.update(received)
        given_up.update({text: why for text, why in now_failed.items() if text not in failed})
    for prompt, names in empty.values():
        reason = (
            f"no phrase left for {names} of {prompt.where()} after {params.max_reasks} re-asks of all "
            f"{params.repeats} answers (official re-query rule); try another model or raise max_reasks"
        )
        if params.on_failure != "wordnet":
            raise ClusterFailure(f"the LLM gave no usable answers: {reason}")
        log.warning(
            "describe: %s falls back to WordNet definitions (llm.on_failure: wordnet): %s",
            prompt.where(),
            reason,
        )
        given_up[prompt.text] = reason
    return given_up
