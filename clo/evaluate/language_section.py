"""One model's language section: LCB pass rate, answer verdicts and per-prompt outcomes.

Built the same way for the trained model and for the base model, so the two sections and
their per-prompt outcomes (what versus_base pairs) are measured identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version

from clo.evaluate.config import EvalConfig
from clo.evaluate.language_check import LineLanguageChecker, ResponseVerdict, pass_rate
from clo.evaluate.report import (
    AnswerSample,
    LanguageRate,
    LanguageReport,
    LineResult,
    add_answer_verdicts,
)
from clo.evaluate.verdict import AnswerVerdict

Outcome = bool | None  # None: not decided for this prompt (left out of rate and pairs)


@dataclass(frozen=True)
class LanguageOutcomes:
    """Per-prompt outcomes of one model's answers to one list of prompts."""

    usable: tuple[Outcome, ...]  # the answer verdict (None: lingua cannot tell)
    lcb: tuple[Outcome, ...]  # LCB line-level pass (None: no line long enough)
    english: tuple[Outcome, ...]  # entirely in English (None: no line long enough)
    reasons: tuple[tuple[str, ...], ...]  # failure reasons of each answer

    def select(self, start: int, stop: int) -> LanguageOutcomes:
        """The outcomes of prompts start..stop-1 (one prompt source)."""
        return LanguageOutcomes(
            self.usable[start:stop],
            self.lcb[start:stop],
            self.english[start:stop],
            self.reasons[start:stop],
        )


@dataclass
class Memo:
    """Line checks and answer verdicts by their inputs, shared by the trained and the base
    model's sections of one evaluation (identical answers are identified once)."""

    lines: dict[tuple[str, str], ResponseVerdict] = field(default_factory=dict)
    verdicts: dict[tuple[str, str, str], AnswerVerdict] = field(default_factory=dict)


@dataclass(frozen=True)
class LanguageResult:
    """A language section and the per-prompt outcomes behind it."""

    section: LanguageReport
    target: LanguageOutcomes
    english: LanguageOutcomes


def detector_name() -> str:
    """The language identifier and its version, as the report records it."""
    return f"lingua-language-detector {version('lingua-language-detector')}"


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


def _outcomes(
    lines: Sequence[ResponseVerdict], answers: Sequence[AnswerVerdict]
) -> LanguageOutcomes:
    def judged(v: ResponseVerdict, value: bool) -> bool | None:
        return None if v.verdict == "no_kept_lines" else value

    return LanguageOutcomes(
        usable=tuple(a.usable for a in answers),
        lcb=tuple(judged(v, v.verdict == "pass") for v in lines),
        english=tuple(judged(v, v.entirely_in("en")) for v in lines),
        reasons=tuple(tuple(a.reasons) for a in answers),
    )


def language_section(
    checker: LineLanguageChecker,
    target_code: str,
    config: EvalConfig,
    target_prompts: Sequence[str],
    target_answers: Sequence[str],
    english_prompts: Sequence[str],
    english_answers: Sequence[str],
    source_names: Sequence[str] | None = None,
    memo: Memo | None = None,
) -> LanguageResult:
    """The language section of one model's answers (schema 1.2) and its outcomes.

    `memo`: checks already made with the same checker and config (see Memo).
    """
    memo = memo or Memo()

    def check(answer: str, lang: str) -> ResponseVerdict:
        if (answer, lang) not in memo.lines:
            memo.lines[(answer, lang)] = checker.check(answer, lang)
        return memo.lines[(answer, lang)]

    tgt_v = [check(a, target_code) for a in target_answers]
    en_v = [check(a, "en") for a in english_answers]
    tgt_rate = _rate(target_code, tgt_v)
    section = LanguageReport(
        detector=detector_name(),
        detector_languages=list(checker.codes),
        min_words_per_line=config.min_words_per_line,
        max_new_tokens=config.max_new_tokens,
        target_prompts=tgt_rate,
        english_prompts=_rate("en", en_v),
        english_bias=tgt_rate.english_rate,
        samples=_samples(target_code, target_prompts, target_answers, tgt_v, config.sample_size)
        + _samples("en", english_prompts, english_answers, en_v, config.sample_size),
    )
    tgt_a, en_a = add_answer_verdicts(
        section,
        config.verdict,
        target_prompts,
        target_answers,
        english_prompts,
        english_answers,
        source_names,
        memo.verdicts,
    )
    return LanguageResult(section, _outcomes(tgt_v, tgt_a), _outcomes(en_v, en_a))
