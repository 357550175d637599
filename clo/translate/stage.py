"""The translation stage: English seed examples -> checked (x_en, y_en, x_tgt, y_tgt) quadruples."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clo.errors import CloError, Stopped
from clo.languages import get_language
from clo.pairs import Quadruple
from clo.seed import SeedExample
from clo.translate.backend import Translator
from clo.translate.cache import TranslationCache, cache_key
from clo.translate.config import Decoding
from clo.translate.quality import REASONS, QualityChecker, Reason
from clo.translate.segment import Segment, clean_output, render, segments_of, split_text

logger = logging.getLogger(__name__)

ProgressHook = Callable[[dict[str, Any]], None]
StopHook = Callable[[], bool]
_MAX_LISTED_DROPS = 100


@dataclass
class TranslationResult:
    """Kept quadruples (input order) and the stage report (counts, cache use, speed)."""

    quadruples: list[Quadruple]
    report: dict[str, Any]


@dataclass
class _Counters:
    segments_total: int = 0
    segments_translated: int = 0
    fallback_segments: int = 0
    cache_hits: int = 0
    done: int = 0
    total: int = 0
    model_calls_before: int = 0
    extra: Counter[str] = field(default_factory=Counter)


class _SegmentEngine:
    """Translates whole texts through split -> cache -> batched model -> restore -> render."""

    def __init__(
        self,
        translator: Translator,
        cache: TranslationCache | None,
        source: str,
        target: str,
        progress: ProgressHook | None,
        should_stop: StopHook | None,
    ) -> None:
        self.translator = translator
        self.cache = cache
        self.source, self.target = source, target
        self.progress, self.should_stop = progress, should_stop
        self.counters = _Counters(model_calls_before=translator.model_calls)

    def _key(self, text: str, decoding: Decoding) -> str:
        cfg, model = self.translator.config, self.translator.output_id
        return cache_key(model, cfg.revision, self.source, self.target, decoding.as_key(), text)

    def _emit(self) -> None:
        if self.progress is None:
            return
        c = self.counters
        self.progress(
            {
                "stage": "translating",
                "step": c.done,
                "total_steps": c.total,
                "cache_hits": c.cache_hits,
                "model_calls": self.translator.model_calls - c.model_calls_before,
            }
        )

    def translate_strings(self, texts: Sequence[str], decoding: Decoding) -> dict[str, str]:
        """Model outputs for unique source strings: cached ones looked up, the rest generated."""
        unique = list(dict.fromkeys(texts))
        keys = {t: self._key(t, decoding) for t in unique}
        hits = self.cache.get_many(keys.values()) if self.cache is not None else {}
        out = {t: hits[k] for t, k in keys.items() if k in hits}
        misses = [t for t in unique if t not in out]
        c = self.counters
        c.cache_hits += len(out)
        c.total += len(misses)
        self._emit()
        for batch in self.translator.plan(misses):
            if self.should_stop is not None and self.should_stop():
                raise Stopped("translation stopped; finished batches are in the cache")
            batch_texts = [misses[i] for i in batch.indices]
            outputs = self.translator.generate(batch_texts, self.source, self.target, decoding)
            fresh = dict(zip(batch_texts, outputs, strict=True))
            if self.cache is not None:
                # per batch, so a stopped or crashed job resumes without redoing this work
                self.cache.put_many({keys[t]: o for t, o in fresh.items()})
            out.update(fresh)
            c.segments_translated += len(batch_texts)
            c.done += len(batch_texts)
            self._emit()
        return out

    def translate_texts(self, texts: Sequence[str], decoding: Decoding) -> list[str]:
        """Structure-preserving translation of each text (code, URLs, numbers kept)."""
        max_chars = self.translator.config.max_segment_chars
        plans = [split_text(t, max_chars) for t in texts]
        segments = list(dict.fromkeys(s for parts in plans for s in segments_of(parts)))
        self.counters.segments_total += len(segments)
        outputs = self.translate_strings([s.masked for s in segments if s.direct], decoding)
        final: dict[Segment, str] = {}
        fallbacks: dict[Segment, list[str | Segment]] = {}
        for seg in segments:
            restored = seg.restore(outputs[seg.masked]) if seg.direct else None
            if restored is None:
                fallbacks[seg] = seg.fallback()
            else:
                final[seg] = restored
        if fallbacks:
            # a placeholder or a number went missing: translate only the prose around them
            self.counters.fallback_segments += len(fallbacks)
            pieces = list(
                dict.fromkeys(p for parts in fallbacks.values() for p in segments_of(parts))
            )
            piece_out = self.translate_strings([p.masked for p in pieces], decoding)
            done = {p: clean_output(p.masked, piece_out[p.masked]) for p in pieces}
            for seg, parts in fallbacks.items():
                final[seg] = render(parts, done)
        return [render(parts, final) for parts in plans]


def _translated_pairs(ids: Sequence[int], flat: Sequence[str]) -> list[tuple[int, tuple[str, str]]]:
    """(example index, (prompt, response)) from a flat [prompt, response, prompt, ...] list."""
    return [(i, (flat[2 * k], flat[2 * k + 1])) for k, i in enumerate(ids)]


def _find_failures(
    checker: QualityChecker,
    examples: Sequence[SeedExample],
    translated: Sequence[tuple[str, str]] | dict[int, tuple[str, str]],
    ids: Iterable[int],
) -> dict[int, tuple[str, Reason]]:
    failures: dict[int, tuple[str, Reason]] = {}
    for i in ids:
        failure = _failure(checker, examples[i], *translated[i])
        if failure is not None:
            failures[i] = failure
    return failures


def _empty_failures(
    examples: Sequence[SeedExample], translated: Sequence[tuple[str, str]]
) -> dict[int, tuple[str, Reason]]:
    failures: dict[int, tuple[str, Reason]] = {}
    for i, (ex, (prompt, response)) in enumerate(zip(examples, translated, strict=True)):
        for name, src, out in (("prompt", ex.prompt, prompt), ("response", ex.response, response)):
            if src.strip() and not out.strip():
                failures[i] = (name, "empty")
                break
    return failures


def _failure(
    checker: QualityChecker, example: SeedExample, prompt: str, response: str
) -> tuple[str, Reason] | None:
    """(field, reason) of the first failing check of one translated example, or None."""
    for name, src, out in (
        ("prompt", example.prompt, prompt),
        ("response", example.response, response),
    ):
        reason = checker.check(src, out)
        if reason is not None:
            return name, reason
    return None


def translate_seed(
    examples: Sequence[SeedExample],
    target_code: str,
    translator: Translator,
    cache: TranslationCache | None = None,
    progress: ProgressHook | None = None,
    should_stop: StopHook | None = None,
) -> TranslationResult:
    """Translate prompts and responses into the target language, check them, build quadruples."""
    started = time.perf_counter()
    cfg = translator.config
    source = get_language(cfg.source_language).code
    target = get_language(target_code).code
    if target == source:
        raise CloError(f"target language: {target!r} is the source language; pick another")
    translator.language_code(source)
    translator.language_code(target)  # fail before any work if the model lacks the language

    engine = _SegmentEngine(translator, cache, source, target, progress, should_stop)
    texts = [t for ex in examples for t in (ex.prompt, ex.response)]
    flat = engine.translate_texts(texts, cfg.decoding)
    translated = [pair for _, pair in _translated_pairs(range(len(examples)), flat)]

    mode = cfg.quality_check
    retried = recovered = 0
    language_checked = None
    if mode == "off":
        # even unchecked, an empty translation is never a training example
        failures = _empty_failures(examples, translated)
    else:
        checker = QualityChecker(target, cfg.quality)
        language_checked = checker.language_id_available
        failures = _find_failures(checker, examples, translated, range(len(examples)))
        if failures and mode == "drop" and cfg.retry_failed:
            # one retry with other decoding (wider beam, repeats blocked) before dropping
            retry_ids = sorted(failures)
            retried = len(retry_ids)
            retry_texts = [t for i in retry_ids for t in (examples[i].prompt, examples[i].response)]
            again = engine.translate_texts(retry_texts, cfg.retry_decoding)
            candidates = dict(_translated_pairs(retry_ids, again))
            still = _find_failures(checker, examples, candidates, retry_ids)
            for i in retry_ids:
                if i not in still:
                    translated[i] = candidates[i]
                    recovered += 1
            failures = still

    # drop mode drops every failure; report and off modes keep all but empty translations
    dropped = {i for i, (_, reason) in failures.items() if mode == "drop" or reason == "empty"}
    quadruples = [
        Quadruple(x_en=ex.prompt, y_en=ex.response, x_tgt=translated[i][0], y_tgt=translated[i][1])
        for i, ex in enumerate(examples)
        if i not in dropped
    ]
    dropped_by_reason = dict.fromkeys(REASONS, 0)
    flagged_by_reason = dict.fromkeys(REASONS, 0)
    for i, (_, reason) in failures.items():
        (dropped_by_reason if i in dropped else flagged_by_reason)[reason] += 1
    seconds = time.perf_counter() - started
    c = engine.counters
    report: dict[str, Any] = {
        "source_language": source,
        "target_language": target,
        "model": cfg.model,
        "revision": cfg.revision,
        "engine": translator.engine,
        "quality_check": mode,
        "language_id_checked": language_checked,
        "n_input": len(examples),
        "n_kept": len(quadruples),
        "n_dropped": len(examples) - len(quadruples),
        "dropped_by_reason": dropped_by_reason,
        "flagged_by_reason": flagged_by_reason,
        "failures": [
            {"index": i, "field": f, "reason": r} for i, (f, r) in sorted(failures.items())
        ][:_MAX_LISTED_DROPS],
        "retried": retried,
        "recovered_by_retry": recovered,
        "segments_total": c.segments_total,
        "segments_translated": c.segments_translated,
        "fallback_segments": c.fallback_segments,
        "cache_hits": c.cache_hits,
        "model_calls": translator.model_calls - c.model_calls_before,
        "seconds": round(seconds, 3),
        # all segments the stage delivered (cache hits included) per wall-clock second
        "sentences_per_second": round(c.segments_total / seconds, 2) if seconds > 0 else None,
    }
    logger.info(
        "translated %d examples to %s: kept %d, dropped %s, %d segments (%d cached) in %.1fs",
        len(examples),
        target,
        len(quadruples),
        dropped_by_reason,
        c.segments_total,
        c.cache_hits,
        seconds,
    )
    return TranslationResult(quadruples=quadruples, report=report)
