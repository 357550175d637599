"""The evaluation stage: every metric of one model on held-out data, as one versioned report."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clo.errors import CloError, Stopped
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
from clo.evaluate.language_check import (
    LanguageCheckUnavailable,
    LineLanguageChecker,
    ResponseVerdict,
    pass_rate,
)
from clo.evaluate.multiple_choice import BenchmarkDataError, run_benchmark
from clo.evaluate.preference import _is_peft, preference_report
from clo.evaluate.report import (
    AnswerSample,
    EvaluationReport,
    JudgeReport,
    LanguageRate,
    LanguageReport,
    LineResult,
    add_answer_verdicts,
)
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


def _rate(expected: str, verdicts: Sequence[ResponseVerdict]) -> LanguageRate:
    agg = pass_rate(verdicts)
    return LanguageRate(
        expected_language=expected,
        total=agg.total,
        judged=agg.judged,
        passed=agg.passed,
        failed=agg.failed,
        no_kept_lines=agg.no_kept_lines,
        pass_rate=agg.pass_rate,
        english_rate=agg.english_rate,
    )


def _samples(
    lang: str,
    prompts: Sequence[str],
    answers: Sequence[str],
    verdicts: Sequence[ResponseVerdict],
    k: int,
) -> list[AnswerSample]:
    return [
        AnswerSample(
            prompt_language=lang,
            prompt=p,
            answer=a,
            verdict=v.verdict,
            lines=[
                LineResult(
                    text=ln.text, words=ln.words, kept=ln.kept, language=ln.language, ok=ln.ok
                )
                for ln in v.lines
            ],
        )
        for p, a, v in list(zip(prompts, answers, verdicts, strict=True))[:k]
    ]


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
) -> EvaluationReport:
    """Right-language rate, preference accuracy + NLL, benchmarks and judged win rate.

    `reference_model`: None (PEFT models use their adapter-disabled base), a loaded base
    model, or precomputed reference log-probs {(prompt, response): logp}. `baseline`: what
    the judge compares against; a PEFT model without one is judged against its own base.
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
    bench_langs = [target.code] + (["en"] if config.benchmark_english else [])
    total = 3 + len(config.benchmarks) * len(bench_langs) + 1
    run = _Run(total, progress, should_stop)
    report = EvaluationReport(
        model=model_name or _model_name(model),
        target_language=target.code,
        target_language_name=target.name,
        heldout_size=len(heldout),
        config=config.model_dump(mode="json"),
    )
    gen: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "batch_size": config.generation_batch_size,
        "max_prompt_tokens": config.max_prompt_tokens,
    }
    tgt_prompts = [q.x_tgt for q in heldout]
    en_prompts = [q.x_en for q in heldout]

    with run.section("generation"):
        tgt_answers = generate_answers(model, tokenizer, tgt_prompts, **gen)
        en_answers = generate_answers(model, tokenizer, en_prompts, **gen)

    with run.section("language"):
        try:
            checker = LineLanguageChecker(
                target.code, config.detector_languages, config.min_words_per_line
            )
        except LanguageCheckUnavailable as exc:
            run.skipped["language"] = str(exc)
        else:
            tgt_v = [checker.check(a, target.code) for a in tgt_answers]
            en_v = [checker.check(a, "en") for a in en_answers]
            from importlib.metadata import version

            import lingua  # noqa: F401  (only for the version string below)

            tgt_rate = _rate(target.code, tgt_v)
            report.language = LanguageReport(
                detector=f"lingua-language-detector {version('lingua-language-detector')}",
                detector_languages=list(checker.codes),
                min_words_per_line=config.min_words_per_line,
                max_new_tokens=config.max_new_tokens,
                target_prompts=tgt_rate,
                english_prompts=_rate("en", en_v),
                english_bias=tgt_rate.english_rate,
                samples=_samples(target.code, tgt_prompts, tgt_answers, tgt_v, config.sample_size)
                + _samples("en", en_prompts, en_answers, en_v, config.sample_size),
            )
            add_answer_verdicts(
                report.language, config.verdict, tgt_prompts, tgt_answers, en_prompts, en_answers
            )

    with run.section("preference"):
        report.preference = preference_report(
            model,
            tokenizer,
            heldout,
            beta=config.beta,
            reference=reference_model,
            batch_size=config.scoring_batch_size,
            max_length=config.max_length,
            max_prompt_length=config.max_prompt_tokens,
        )

    for bench in config.benchmarks:
        for lang in bench_langs:
            with run.section(f"{bench}:{lang}"):
                try:
                    report.benchmarks.append(
                        run_benchmark(
                            model,
                            tokenizer,
                            bench,
                            lang,
                            source=config.benchmark_source,
                            files=config.benchmark_files,
                            limit=config.benchmark_limit,
                            batch_size=config.scoring_batch_size,
                        )
                    )
                except BenchmarkDataError as exc:
                    run.skipped[f"{bench}:{lang}"] = str(exc)

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
                        tgt_prompts,
                        tgt_answers,
                        en_prompts,
                        en_answers,
                        gen,
                    )
                except JudgeError as exc:
                    logger.warning("judging skipped: %s", exc)
                    run.skipped["judge"] = str(exc)

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
