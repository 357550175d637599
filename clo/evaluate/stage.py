"""The evaluation stage: every metric of one model on held-out data, as one versioned report."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clo.errors import CloError, Stopped
from clo.evaluate.base_side import BaseOutputs, collect_answers, collect_benchmark
from clo.evaluate.config import EvalConfig
from clo.evaluate.generation import generate_answers
from clo.evaluate.judge import (
    PROMPT_VERSION,
    Judge,
    JudgeError,
    judge_pairs,
    judge_prompt_sha256,
    judged_samples,
    win_rate,
)
from clo.evaluate.language_check import LanguageCheckUnavailable, LineLanguageChecker
from clo.evaluate.language_section import LanguageResult, Memo, language_section
from clo.evaluate.multiple_choice import BenchmarkDataError, run_benchmark_scored
from clo.evaluate.preference import (
    _is_peft,
    report_from_scores,
    score_preference,
)
from clo.evaluate.prompt_sources import evaluation_sources
from clo.evaluate.report import EvaluationReport, JudgeReport
from clo.evaluate.stage_base import BaseSide, concat_answers, resolve_base, versus_base_report
from clo.languages import get_language
from clo.pairs import Quadruple

logger = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


@dataclass
class Baseline:
    """What the judge compares the model against.

    Either a model (answers are generated with the same settings; `tokenizer` defaults to
    the evaluated model's) or precomputed `answers` keyed by prompt text.
    """

    name: str
    model: Any = None
    tokenizer: Any = None
    answers: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if (self.model is None) == (self.answers is None):
            raise CloError("Baseline needs exactly one of `model` or `answers`")


@contextlib.contextmanager
def _adapter_off(model: Any) -> Iterator[None]:
    with model.disable_adapter():
        yield


def _model_name(model: Any) -> str:
    if _is_peft(model):
        cfg = next(iter(model.peft_config.values()))
        return f"{cfg.base_model_name_or_path} + adapter"
    cfg = getattr(model, "config", None)
    return str(getattr(cfg, "_name_or_path", "") or type(model).__name__)


class _Run:
    """Bookkeeping shared by the sections: timings, skips, progress and stop checks."""

    def __init__(
        self, total: int, progress: Progress | None, should_stop: Callable[[], bool] | None
    ) -> None:
        self.total = total
        self.step = 0
        self.progress = progress
        self.should_stop = should_stop
        self.timings: dict[str, float] = {}
        self.skipped: dict[str, str] = {}

    def check_stop(self, _done: int = 0) -> None:
        """Between generation batches too: a long section must not delay a cancel."""
        if self.should_stop is not None and self.should_stop():
            raise Stopped("evaluation stopped")

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        if self.should_stop is not None and self.should_stop():
            raise Stopped(f"evaluation stopped before {name}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)
            self.step += 1
            if self.progress is not None:
                self.progress(
                    {
                        "stage": "evaluating",
                        "step": self.step,
                        "total_steps": self.total,
                        "section": name,
                    }
                )


def evaluate(
    model: Any,
    tokenizer: Any,
    heldout: Sequence[Quadruple],
    target_code: str,
    config: EvalConfig | None = None,
    reference_model: Any = None,
    baseline: Baseline | None = None,
    judge: Judge | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    model_name: str | None = None,
    base: BaseSide | None = None,
) -> EvaluationReport:
    """Right-language rate, preference accuracy + NLL, benchmarks, judged win rate, and the
    base model beside the trained one.

    Answers are generated for the shipped prompt set of the target language (the first
    `config.prompt_set_limit`) and the held-out prompts, in both languages; preference,
    NLL and the judge use the held-out examples. `reference_model`: None (PEFT models use
    their adapter-disabled base), a loaded base model, or precomputed reference log-probs
    {(prompt, response): logp}. `base`: see BaseSide (default for PEFT: adapter disabled,
    no cache). `baseline`: what the judge compares against (default: the base's answers).
    A section that cannot run (no lingua support, no benchmark data, judge unreachable) is
    recorded in `report.skipped` with the reason instead of failing the whole evaluation.
    """
    config = config or EvalConfig()
    target = get_language(target_code)
    if target.code == "en":
        raise CloError("target_code must not be English: the evaluation compares against English")
    heldout = list(heldout)
    if not heldout or not all(isinstance(q, Quadruple) for q in heldout):
        raise CloError("heldout must be a non-empty list of Quadruple (x_en, y_en, x_tgt, y_tgt)")
    side, no_base = resolve_base(model, base, config)
    bench_langs = [target.code] + (["en"] if config.benchmark_english else [])
    total = 3 + len(config.benchmarks) * len(bench_langs) + 1 + (2 if side else 0)
    run = _Run(total, progress, should_stop)
    sources = evaluation_sources(target.code, heldout, config.prompt_set_limit)
    report = EvaluationReport(
        model=model_name or _model_name(model),
        target_language=target.code,
        target_language_name=target.name,
        heldout_size=len(heldout),
        config=config.model_dump(mode="json"),
        prompt_sources=[s.name for s in sources],
    )
    gen: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "batch_size": config.generation_batch_size,
        "max_prompt_tokens": config.max_prompt_tokens,
        "on_batch": run.check_stop,
    }
    tgt_prompts = [p for s in sources for p in s.target]
    en_prompts = [p for s in sources for p in s.english]
    names = [s.name for s in sources for _ in s.target]
    held = slice(0, len(heldout))  # the held-out source comes first
    peft_base = side is not None and side.outputs is None
    outputs = side.outputs if side and side.outputs else BaseOutputs()
    base_kw: dict[str, Any] = {
        "identity": side.identity if side else None,
        "cache": side.cache if side else None,
        "disable_adapter": True,
    }

    with run.section("generation"):
        tgt_answers = generate_answers(model, tokenizer, tgt_prompts, **gen)
        en_answers = generate_answers(model, tokenizer, en_prompts, **gen)

    base_tgt: list[str] = []
    base_en: list[str] = []
    if side is not None:
        with run.section("base_generation"):
            if peft_base:
                collect_answers(
                    outputs, model, tokenizer, sources, config, on_batch=run.check_stop, **base_kw
                )
            base_tgt, base_en = concat_answers(sources, outputs)

    languages: dict[str, LanguageResult] = {}
    with run.section("language"):
        try:
            checker = LineLanguageChecker(
                target.code, config.detector_languages, config.min_words_per_line
            )
        except LanguageCheckUnavailable as exc:
            run.skipped["language"] = str(exc)
        else:
            answers = {"trained": (tgt_answers, en_answers), "base": (base_tgt, base_en)}
            memo = Memo()
            for who, (tgt, en) in answers.items():
                if tgt:
                    languages[who] = language_section(
                        checker, target.code, config, tgt_prompts, tgt, en_prompts, en, names, memo
                    )
            report.language = languages["trained"].section

    with run.section("preference"):
        scores = score_preference(
            model,
            tokenizer,
            heldout,
            reference_model,
            batch_size=config.scoring_batch_size,
            max_length=config.max_length,
            max_prompt_length=config.max_prompt_tokens,
        )
        report.preference = report_from_scores(heldout, scores, config.beta)

    bench_pairs: dict[str, tuple[list[bool], list[bool], bool]] = {}
    for bench in config.benchmarks:
        for lang in bench_langs:
            with run.section(f"{bench}:{lang}"):
                try:
                    result, items = run_benchmark_scored(
                        model,
                        tokenizer,
                        bench,
                        lang,
                        source=config.benchmark_source,
                        files=config.benchmark_files,
                        limit=config.benchmark_limit,
                        batch_size=config.scoring_batch_size,
                    )
                    report.benchmarks.append(result)
                    if peft_base:
                        collect_benchmark(outputs, model, tokenizer, bench, lang, config, **base_kw)
                except BenchmarkDataError as exc:
                    run.skipped[f"{bench}:{lang}"] = str(exc)
                    continue
                if f"{bench}:{lang}" in outputs.benchmarks:
                    base_result, base_ok = outputs.benchmarks[f"{bench}:{lang}"]
                    paired = (base_result.source, base_result.n) == (result.source, result.n)
                    key = f"{bench}_{'english' if lang == 'en' else 'target'}"
                    bench_pairs[key] = ([s.predicted == s.answer for s in items], base_ok, paired)

    if baseline is None and side is not None:
        who = side.identity.name if side.identity else "(loaded separately)"
        base_name = "base model (adapter disabled)" if peft_base else f"base model {who}"
        held_prompts = tgt_prompts[held] + en_prompts[held]
        baseline = Baseline(
            name=base_name,
            answers=dict(zip(held_prompts, base_tgt[held] + base_en[held], strict=True)),
        )
    with run.section("judge"):
        if judge is None:
            run.skipped["judge"] = "no judge configured"
        else:
            baseline = baseline or _base_as_baseline(model)
            if baseline is None:
                run.skipped["judge"] = (
                    "no baseline: pass a baseline model or answers "
                    "(the base model is used automatically for adapters)"
                )
            else:
                try:
                    report.judge = _judge_section(
                        judge,
                        baseline,
                        model,
                        tokenizer,
                        target.code,
                        target.name,
                        config,
                        tgt_prompts[held],
                        tgt_answers[held],
                        en_prompts[held],
                        en_answers[held],
                        gen,
                    )
                except JudgeError as exc:
                    logger.warning("judging skipped: %s", exc)
                    run.skipped["judge"] = str(exc)

    if side is None:
        run.skipped["versus_base"] = no_base
    else:
        with run.section("versus_base"):
            report.versus_base = versus_base_report(
                side, peft_base, outputs, languages, sources, heldout, scores, bench_pairs, config
            )
    report.skipped = run.skipped
    report.timings_s = run.timings
    return report


def _base_as_baseline(model: Any) -> Baseline | None:
    return Baseline(name="base model (adapter disabled)", model=model) if _is_peft(model) else None


def _baseline_answers(
    baseline: Baseline, model: Any, tokenizer: Any, prompts: Sequence[str], gen: dict[str, Any]
) -> list[str]:
    if baseline.answers is not None:
        missing = [p for p in prompts if p not in baseline.answers]
        if missing:
            raise CloError(
                f"baseline answers lack {len(missing)} held-out prompt(s), e.g. {missing[0][:60]!r}"
            )
        return [baseline.answers[p] for p in prompts]
    tok = baseline.tokenizer or tokenizer
    if baseline.model is model:  # the PEFT model's own base: same weights, adapter off
        with _adapter_off(model):
            return generate_answers(model, tok, prompts, **gen)
    return generate_answers(baseline.model, tok, prompts, **gen)


def _judge_section(
    judge: Judge,
    baseline: Baseline,
    model: Any,
    tokenizer: Any,
    target_code: str,
    target_name: str,
    config: EvalConfig,
    tgt_prompts: list[str],
    tgt_answers: list[str],
    en_prompts: list[str],
    en_answers: list[str],
    gen: dict[str, Any],
) -> JudgeReport:
    groups = [("tgt", target_code, target_name, tgt_prompts, tgt_answers)]
    if config.judge_english:
        groups.append(("en", "en", "English", en_prompts, en_answers))
    results, samples = {}, []
    for key, code, name, prompts, answers in groups:
        theirs = _baseline_answers(baseline, model, tokenizer, prompts, gen)
        judged = judge_pairs(judge, prompts, answers, theirs, name, config.judge_concurrency)
        results[key] = win_rate(judged, code)
        samples += judged_samples(judged, code, config.judge_sample_size)
    return JudgeReport(
        judge=judge.describe(),
        prompt_version=PROMPT_VERSION,
        prompt_sha256=judge_prompt_sha256(),
        baseline=baseline.name,
        results=results,
        samples=samples,
    )
