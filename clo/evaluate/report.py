"""The evaluation report: a versioned, stable JSON schema (pydantic models).

`EvaluationReport.model_dump(mode="json")` is what the service stores and serves at
`GET /v1/jobs/{id}/evaluation`. Compatible additions (new optional fields) bump the minor
version; renaming or removing a field bumps the major version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from clo.evaluate.stats import wilson_interval
from clo.evaluate.verdict import (
    VERDICT_VERSION,
    AnswerVerdict,
    Reason,
    VerdictChecker,
    VerdictConfig,
    summarize,
)

# 1.1: answer verdicts (usable rate, failure reasons, per-answer records) and Wilson intervals
SCHEMA_VERSION = "1.1"

Direction = Literal["en", "tgt"]
ReferenceKind = Literal["adapter_disabled", "model", "precomputed", "none"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- right-language rate ------------------------------------------------------------------


class LineResult(_Model):
    text: str
    words: int
    kept: bool = Field(description="False: fewer words than the minimum, not checked.")
    language: str | None = Field(description="Detected ISO 639-1 code (None: not kept/undecided).")
    ok: bool | None


class Interval(_Model):
    """A confidence interval of a rate."""

    low: float
    high: float
    confidence: float = 0.95
    method: Literal["wilson"] = "wilson"


class AnswerVerdictRecord(_Model):
    """The usable-answer verdict on one answer (see clo.evaluate.verdict)."""

    prompt_language: str
    index: int = Field(description="Position of the prompt in the held-out set.")
    usable: bool | None = Field(
        description="A usable answer in the right language (None: lingua cannot identify it)."
    )
    reasons: list[Reason] = Field(description="Every failure reason, in the primary order.")
    primary_reason: Reason | None = Field(description="The first of `reasons` (None: usable).")
    language: str | None = Field(description="Language of most of the checked prose letters.")
    language_share: float | None = Field(
        description="Share of checked letters in the expected language."
    )
    tokens: int
    prompt_token_share: float = Field(description="Share of answer tokens found in the prompt.")
    copied_share: float = Field(description="Share of answer tokens in runs copied from it.")
    top_ngram_share: float = Field(description="Tokens covered by the most repeated n-gram.")
    distinct_ngram_ratio: float | None = Field(description="Distinct n-grams / n-grams.")


class AnswerSample(_Model):
    prompt_language: str = Field(description="Language code the prompt (and answer) should be in.")
    prompt: str
    answer: str
    verdict: Literal["pass", "fail", "no_kept_lines"]
    lines: list[LineResult]
    usable: bool | None = Field(default=None, description="Its answer verdict (schema 1.1).")
    reasons: list[Reason] = Field(default_factory=list, description="Its failure reasons.")


class LanguageRate(_Model):
    expected_language: str
    total: int = Field(description="Answers generated.")
    judged: int = Field(description="Answers with at least one checked line (the denominator).")
    passed: int
    failed: int
    no_kept_lines: int = Field(description="Answers with no line long enough to check.")
    pass_rate: float | None = Field(description="Line-level pass rate (LCB LPR) over judged.")
    english_rate: float | None = Field(description="Share of judged answers entirely in English.")
    # schema 1.1 (None in reports written before answer verdicts)
    pass_rate_interval: Interval | None = Field(
        default=None, description="Wilson 95% interval of pass_rate."
    )
    usable: int | None = Field(
        default=None, description="Answers judged a usable answer in the right language."
    )
    undecided: int | None = Field(
        default=None, description="Answers whose verdict needs a language lingua lacks."
    )
    usable_rate: float | None = Field(
        default=None,
        description="usable / (total - undecided): non-empty, right language, "
        "no echo of the prompt, no repetition loop.",
    )
    usable_interval: Interval | None = Field(
        default=None, description="Wilson 95% interval of usable_rate."
    )
    failure_reasons: dict[str, int] | None = Field(
        default=None, description="Answers per failure reason (an answer can have several)."
    )
    primary_failure_reasons: dict[str, int] | None = Field(
        default=None, description="Failed answers per primary reason (each counted once)."
    )


class LanguageReport(_Model):
    detector: str = Field(description="Library and version that identified languages.")
    detector_languages: list[str]
    min_words_per_line: int
    max_new_tokens: int
    target_prompts: LanguageRate
    english_prompts: LanguageRate
    english_bias: float | None = Field(
        description="Share of target-language prompts answered in English (of judged answers)."
    )
    samples: list[AnswerSample]
    verdict_version: str | None = Field(
        default=None, description="clo.evaluate.verdict.VERDICT_VERSION of the answer verdicts."
    )
    answer_verdicts: list[AnswerVerdictRecord] = Field(
        default_factory=list,
        description="One record per answer: target-language prompts, then English prompts.",
    )


def _wilson(successes: int, n: int) -> Interval | None:
    if not n:
        return None
    low, high = wilson_interval(successes, n)
    return Interval(low=low, high=high)


def _record(lang: str, index: int, v: AnswerVerdict) -> AnswerVerdictRecord:
    return AnswerVerdictRecord(
        prompt_language=lang, index=index, primary_reason=v.primary_reason, **asdict(v)
    )


def add_answer_verdicts(
    section: LanguageReport,
    config: VerdictConfig,
    target_prompts: Sequence[str],
    target_answers: Sequence[str],
    english_prompts: Sequence[str],
    english_answers: Sequence[str],
) -> None:
    """Fill the schema 1.1 fields of a language section from answer verdicts, in place.

    The verdicts use the section's own detector languages and minimum line length, so they
    and the line-level pass rate are measured with the same lingua set-up.
    """
    checker = VerdictChecker(
        section.target_prompts.expected_language,
        config,
        section.detector_languages,
        section.min_words_per_line,
    )
    section.verdict_version = VERDICT_VERSION
    section.answer_verdicts = []
    for rate, prompts, answers in (
        (section.target_prompts, target_prompts, target_answers),
        (section.english_prompts, english_prompts, english_answers),
    ):
        lang = rate.expected_language
        pairs = list(zip(prompts, answers, strict=True))
        verdicts = [checker.verdict(p, a, lang) for p, a in pairs]
        summary = summarize(verdicts)
        rate.pass_rate_interval = _wilson(rate.passed, rate.judged)
        rate.usable = summary.usable
        rate.undecided = summary.undecided
        rate.usable_rate = summary.usable_rate
        rate.usable_interval = _wilson(summary.usable, summary.decided)
        rate.failure_reasons = {str(r): n for r, n in summary.reasons.items()}
        rate.primary_failure_reasons = {str(r): n for r, n in summary.primary_reasons.items()}
        section.answer_verdicts += [_record(lang, i, v) for i, v in enumerate(verdicts)]
        # the samples are the first answers of each prompt set, in order
        samples = [s for s in section.samples if s.prompt_language == lang]
        for sample, (prompt, answer), verdict in zip(samples, pairs, verdicts, strict=False):
            if (sample.prompt, sample.answer) == (prompt, answer):
                sample.usable, sample.reasons = verdict.usable, list(verdict.reasons)


# ---- preference accuracy + NLL ------------------------------------------------------------


class DirectionStats(_Model):
    direction: Direction
    n: int
    accuracy: float | None = Field(
        description="Share of pairs with chosen reward > rejected reward (None: no reference)."
    )
    reward_margin_mean: float | None
    chosen_reward_mean: float | None
    rejected_reward_mean: float | None
    logp_accuracy: float = Field(
        description="Share of pairs where the policy gives the chosen response more log-prob."
    )
    chosen_logp_mean: float
    rejected_logp_mean: float


class NllStats(_Model):
    sequences: int
    tokens: int
    nll: float = Field(description="Token-mean negative log-likelihood (nats).")
    perplexity: float


class PreferenceReport(_Model):
    beta: float
    reference: ReferenceKind
    directions: dict[str, DirectionStats] = Field(description='Keyed "en" and "tgt".')
    nll: dict[str, NllStats] = Field(
        description='Held-out responses: "target" (y_tgt | x_tgt) and "english" (y_en | x_en).'
    )


# ---- multiple choice ----------------------------------------------------------------------


class BenchmarkResult(_Model):
    benchmark: Literal["belebele", "mmmlu"]
    language: str
    source: str = Field(description="Hub dataset/config/split or local file it was read from.")
    n: int
    accuracy: float = Field(description="Option with the highest summed log-prob is correct.")
    accuracy_norm: float = Field(
        description="Option with the highest log-prob per UTF-8 byte is correct (lm-eval acc_norm)."
    )


# ---- judged win rate ----------------------------------------------------------------------


class WinRate(_Model):
    prompt_language: str
    n: int
    wins: int
    ties: int
    losses: int
    win_rate: float | None = Field(description="(wins + 0.5 * ties) / n.")
    stderr: float | None = Field(description="sqrt(p (1 - p) / n).")
    position_inconsistent: int = Field(description="Pairs whose two orders disagreed (ties).")
    invalid_verdicts: int = Field(description="Judge replies with no parseable verdict.")


class JudgedPair(_Model):
    prompt_language: str
    prompt: str
    model_answer: str
    baseline_answer: str
    verdict_model_first: str = Field(description="Judge verdict with the model as answer A.")
    verdict_baseline_first: str = Field(description="Judge verdict with the baseline as A.")
    outcome: Literal["win", "tie", "loss"]


class JudgeReport(_Model):
    judge: dict[str, str] = Field(description="kind, model, endpoint (never the key).")
    prompt_version: str
    prompt_sha256: str
    baseline: str
    results: dict[str, WinRate] = Field(description='Keyed "tgt" and "en".')
    samples: list[JudgedPair]


# ---- the report ---------------------------------------------------------------------------


class EvaluationReport(_Model):
    # older reports (1.0) still load: every field added since has a default
    schema_version: Literal["1.0", "1.1"] = "1.1"  # = SCHEMA_VERSION
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    model: str = Field(description="Name or path of the evaluated model (+ adapter).")
    target_language: str
    target_language_name: str
    heldout_size: int
    config: dict[str, Any] = Field(description="The EvalConfig the numbers were computed with.")
    language: LanguageReport | None = None
    preference: PreferenceReport | None = None
    benchmarks: list[BenchmarkResult] = Field(default_factory=list)
    judge: JudgeReport | None = None
    skipped: dict[str, str] = Field(
        default_factory=dict, description="Section or item -> why it was not computed."
    )
    timings_s: dict[str, float] = Field(default_factory=dict)
