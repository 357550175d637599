"""The base model's side of an evaluation: its answers and benchmark scores, cached.

The base answers the same prompts with the same decoding as the trained model; for an
adapter that is the trained PEFT model with its adapter disabled (no second load), for a
full fine-tune a separately loaded base model. Every result is looked up in a
BaseResultCache first, so a second job on the same base generates no base answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from clo.checksum import sha256_file
from clo.evaluate.base_cache import BaseResultCache, base_cache_key
from clo.evaluate.config import EvalConfig
from clo.evaluate.generation import generate_answers
from clo.evaluate.multiple_choice import run_benchmark_scored
from clo.evaluate.prompt_sources import PromptSource
from clo.evaluate.report import BenchmarkResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseModelId:
    """The base model as the report names it and as cache keys identify it."""

    name: str  # hub id or catalog name, shown to users (never a worker path)
    source: str | None = None  # where it loads from; None: not cacheable
    revision: str | None = None


@dataclass
class BaseOutputs:
    """What the base model produced, and how much of it came from the cache."""

    # source name -> (answers to its target-language prompts, answers to its English prompts)
    answers: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    # "<benchmark>:<lang>" -> (result, correct per item in the trained model's item order)
    benchmarks: dict[str, tuple[BenchmarkResult, list[bool]]] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    generated_answers: int = 0
    scored_benchmarks: int = 0

    @property
    def fully_cached(self) -> bool:
        """Every result came from the cache (nothing generated or scored here)."""
        return self.cache_hits > 0 and not (self.generated_answers or self.scored_benchmarks)


@contextlib.contextmanager
def adapter_off(model: Any, enabled: bool) -> Iterator[None]:
    """The PEFT model's base weights inside the block when `enabled`, else nothing changes."""
    if not enabled:
        yield
        return
    with model.disable_adapter():
        yield


def _device_and_dtype(model: Any) -> dict[str, str]:
    # greedy answers and scores can differ in the last bits between devices and dtypes
    param = next(model.parameters())
    return {"device_type": param.device.type, "dtype": str(param.dtype).removeprefix("torch.")}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def decoding_settings(config: EvalConfig, tokenizer: Any, model: Any) -> dict[str, Any]:
    """Everything that decides a greedy answer besides the model and the prompt."""
    template = getattr(tokenizer, "chat_template", None)
    return {
        "greedy": True,
        "max_new_tokens": config.max_new_tokens,
        "max_prompt_tokens": config.max_prompt_tokens,
        "generation_batch_size": config.generation_batch_size,
        "chat_template": _sha(template) if isinstance(template, str) else None,
        **_device_and_dtype(model),
    }


def _key(
    identity: BaseModelId | None,
    cache: BaseResultCache | None,
    kind: str,
    prompts: str,
    decoding: dict[str, Any],
) -> str | None:
    """The cache key, or None when nothing is cached (no cache, or no stable model source)."""
    if cache is None or identity is None or identity.source is None:
        return None
    return base_cache_key(
        kind=kind,
        model_source=identity.source,
        revision=identity.revision,
        prompt_set_hash=prompts,
        decoding=decoding,
    )


def _cached_answers(
    value: dict[str, Any] | None, src: PromptSource
) -> tuple[list[str], list[str]] | None:
    """The (target, english) answers of a cache entry; None when it does not fit `src`."""
    if not value or value.get("source_digest") != src.digest:
        return None
    target, english = value.get("target"), value.get("english")
    if not isinstance(target, list) or not isinstance(english, list):
        return None
    if len(target) != len(src.target) or len(english) != len(src.english):
        return None
    if not all(isinstance(a, str) for a in [*target, *english]):
        return None
    return list(target), list(english)


def collect_answers(
    outputs: BaseOutputs,
    model: Any,
    tokenizer: Any,
    sources: Sequence[PromptSource],
    config: EvalConfig,
    *,
    identity: BaseModelId | None,
    cache: BaseResultCache | None,
    disable_adapter: bool,
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Base answers to every source's prompts into `outputs`: cached, else generated.
    `on_batch`: called after each generated batch (a stop check may raise there)."""
    decoding = decoding_settings(config, tokenizer, model)
    gen: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "batch_size": config.generation_batch_size,
        "max_prompt_tokens": config.max_prompt_tokens,
        "on_batch": on_batch,
    }
    for src in sources:
        key = _key(identity, cache, "answers", src.digest, decoding)
        if key is not None and cache is not None:
            hit = _cached_answers(cache.get(key), src)
            if hit is not None:
                outputs.answers[src.name] = hit
                outputs.cache_hits += 1
                continue
            outputs.cache_misses += 1
        with adapter_off(model, disable_adapter):
            target = generate_answers(model, tokenizer, list(src.target), **gen)
            english = generate_answers(model, tokenizer, list(src.english), **gen)
        outputs.generated_answers += len(target) + len(english)
        outputs.answers[src.name] = (target, english)
        if key is not None and cache is not None:
            cache.put(
                key,
                {
                    "source": src.name,
                    "source_digest": src.digest,
                    "target": target,
                    "english": english,
                },
            )
    logger.info(
        "base answers: %d generated, %d sources from the cache",
        outputs.generated_answers,
        outputs.cache_hits,
    )


def _benchmark_request(config: EvalConfig, benchmark: str, lang: str) -> str:
    """A hash of which items a benchmark run scores (given files by content)."""
    given = config.benchmark_files.get(f"{benchmark}:{lang}")
    return _sha(
        json.dumps(
            {
                "benchmark": benchmark,
                "lang": lang,
                "source": config.benchmark_source,
                "limit": config.benchmark_limit,
                "file": sha256_file(given) if given else None,
            },
            sort_keys=True,
        )
    )


def collect_benchmark(
    outputs: BaseOutputs,
    model: Any,
    tokenizer: Any,
    benchmark: str,
    lang: str,
    config: EvalConfig,
    *,
    identity: BaseModelId | None,
    cache: BaseResultCache | None,
    disable_adapter: bool,
) -> None:
    """The base model's score on one benchmark and language into `outputs` (cached, else
    scored); a BenchmarkDataError propagates, as for the trained model."""
    name = f"{benchmark}:{lang}"
    scoring = {"scoring_batch_size": config.scoring_batch_size, **_device_and_dtype(model)}
    key = _key(identity, cache, "benchmark", _benchmark_request(config, benchmark, lang), scoring)
    if key is not None and cache is not None:
        value = cache.get(key)
        if value and isinstance(value.get("correct"), list):
            try:
                result = BenchmarkResult.model_validate(value.get("result"))
            except ValueError:
                result = None
            if result is not None and len(value["correct"]) == result.n:
                outputs.benchmarks[name] = (result, [bool(c) for c in value["correct"]])
                outputs.cache_hits += 1
                return
        outputs.cache_misses += 1
    with adapter_off(model, disable_adapter):
        result, scores = run_benchmark_scored(
            model,
            tokenizer,
            benchmark,
            lang,
            source=config.benchmark_source,
            files=config.benchmark_files,
            limit=config.benchmark_limit,
            batch_size=config.scoring_batch_size,
        )
    correct = [s.predicted == s.answer for s in scores]
    outputs.benchmarks[name] = (result, correct)
    outputs.scored_benchmarks += 1
    if key is not None and cache is not None:
        cache.put(key, {"result": result.model_dump(mode="json"), "correct": correct})
