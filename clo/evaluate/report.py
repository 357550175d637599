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
# 1.2: prompt sources (shipped set + held-out), the base model beside the trained one
SCHEMA_VERSION = "1.2"

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
    index: int = Field(
        description="Position of the prompt in the evaluated prompts (report.prompt_sources in "
        "order; before 1.2: the held-out set)."
    )
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
    source: str | None = Field(default=None, description="Its prompt source (schema 1.2).")


class AnswerSample(_Model):
    prompt_language: str = Field(description="Language code the prompt (and answer) should be in.")
    prompt: str
    answer: str
    verdict: Literal["pass", "fail", "no_kept_lines"]
    lines: list[LineResult]
    usable: bool | None = Field(default=None, description="Its answer verdict (schema 1.1).")
    reasons: list[Reason] = Field(default_factory=list, description="Its failure reasons.")
    source: str | None = Field(default=None, description="Its prompt source (schema 1.2).")


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
    source_names: Sequence[str] | None = None,
    memo: dict[tuple[str, str, str], AnswerVerdict] | None = None,
) -> list[list[AnswerVerdict]]:
    """Fill the schema 1.1 fields of a language section from answer verdicts, in place.

    The verdicts use the section's own detector languages and minimum line length, so they
    and the line-level pass rate are measured with the same lingua set-up. `source_names`:
    the prompt source of each prompt (the same layout for both languages). Returns the
    verdicts, target-language answers first. `memo`: verdicts by (prompt, answer, language)
    shared between calls with the same settings (the base model often answers as the
    trained one does, and lingua is the slow part).
    """
    memo = {} if memo is None else memo
    checker = VerdictChecker(
        section.target_prompts.expected_language,
        config,
        section.detector_languages,
        section.min_words_per_line,
    )
    section.verdict_version = VERDICT_VERSION
    section.answer_verdicts = []
    out: list[list[AnswerVerdict]] = []
    for rate, prompts, answers in (
        (section.target_prompts, target_prompts, target_answers),
        (section.english_prompts, english_prompts, english_answers),
    ):
        lang = rate.expected_language
        pairs = list(zip(prompts, answers, strict=True))
        verdicts = []
        for p, a in pairs:
            if (p, a, lang) not in memo:
                memo[(p, a, lang)] = checker.verdict(p, a, lang)
            verdicts.append(memo[(p, a, lang)])
        summary = summarize(verdicts)
        rate.pass_rate_interval = _wilson(rate.passed, rate.judged)
        rate.usable = summary.usable
        rate.undecided = summary.undecided
        rate.usable_rate = summary.usable_rate
        rate.usable_interval = _wilson(summary.usable, summary.decided)
        rate.failure_reasons = {str(r): n for r, n in summary.reasons.items()}
        rate.primary_failure_reasons = {str(r): n for r, n in summary.primary_reasons.items()}
        names = list(source_names) if source_names is not None else [None] * len(pairs)
        section.answer_verdicts += [
            _record(lang, i, v).model_copy(update={"source": names[i]})
            for i, v in enumerate(verdicts)
        ]
        # the samples are the first answers of each prompt set, in order
        samples = [s for s in section.samples if s.prompt_language == lang]
        for i, (sample, (prompt, answer), verdict) in enumerate(
            zip(samples, pairs, verdicts, strict=False)
        ):
            if (sample.prompt, sample.answer) == (prompt, answer):
                sample.usable, sample.reasons = verdict.usable, list(verdict.reasons)
                sample.source = names[i]
        out.append(verdicts)
    return out


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


# ---- the base model beside the trained one (schema 1.2) -----------------------------------


class Comparison(_Model):
    """One metric of the trained model beside the base model on the same prompts or items."""

    kind: Literal["rate", "mean"] = Field(
        description="rate: share of prompts/items with an outcome (Wilson intervals, McNemar); "
        "mean: a per-token mean (nll) or its exponential (perplexity)."
    )
    higher_is_better: bool
    base: float | None
    trained: float | None
    base_count: int | None = Field(default=None, description="Rate: base successes.")
    base_total: int | None = Field(default=None, description="Rate: base denominator.")
    trained_count: int | None = Field(default=None, description="Rate: trained successes.")
    trained_total: int | None = Field(default=None, description="Rate: trained denominator.")
    base_interval: Interval | None = None
    trained_interval: Interval | None = None
    n: int = Field(description="Paired prompts, items or sequences the difference is over.")
    delta: float | None = Field(
        default=None,
        description="trained - base over the n pairs (equals trained - base when both rates "
        "have all n prompts in their denominators).",
    )
    delta_low: float | None = None
    delta_high: float | None = None
    delta_method: str | None = Field(
        default=None, description="How the delta interval was computed."
    )
    p_value: float | None = Field(
        default=None, description="Exact McNemar p-value of the paired pass/fail outcomes."
    )
    distinguishable: bool | None = Field(
        default=None, description="The delta interval excludes zero (None: no interval)."
    )
    verdict: str | None = Field(default=None, description="The difference in one sentence.")


class BaseRun(_Model):
    """Which base model was scored and how much of it came from the cache."""

    model: str = Field(description="The base model's name (hub id or catalog name).")
    source: str | None = Field(description="Where it was loaded from.")
    revision: str | None
    how: Literal["adapter_disabled", "separate_model"] = Field(
        description="adapter_disabled: the trained PEFT model with its adapter off; "
        "separate_model: the base model loaded on its own (full fine-tunes)."
    )
    cached: bool = Field(description="Every base answer and benchmark came from the cache.")
    cache_hits: int
    cache_misses: int
    generated_answers: int = Field(description="Base answers generated in this evaluation.")
    scored_benchmarks: int = Field(description="Base benchmark runs scored in this evaluation.")


class VersusBaseReport(_Model):
    """base | trained | delta for every metric that has a base value, with uncertainty."""

    base: BaseRun
    confidence: float = 0.95
    bootstrap_resamples: int
    bootstrap_seed: int = 0
    metrics: dict[str, Comparison] = Field(
        description="usable_rate_*, pass_rate_*, english_bias, failure_*_<reason>, nll_*, "
        "perplexity_*, logp_accuracy_*, <benchmark>_* (target / english)."
    )
    by_source: dict[str, dict[str, Comparison]] = Field(
        default_factory=dict, description="The rate metrics per prompt source."
    )
    language: LanguageReport | None = Field(
        default=None, description="The base model's language section, as for the trained one."
    )


# ---- the report ---------------------------------------------------------------------------


class EvaluationReport(_Model):
    # older reports (1.0, 1.1) still load: every field added since has a default
    schema_version: Literal["1.0", "1.1", "1.2"] = "1.2"  # = SCHEMA_VERSION
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    model: str = Field(description="Name or path of the evaluated model (+ adapter).")
    target_language: str
    target_language_name: str
    heldout_size: int
    config: dict[str, Any] = Field(description="The EvalConfig the numbers were computed with.")
    prompt_sources: list[str] = Field(
        default_factory=list,
        description='Where the generation prompts came from, in order: "heldout:<n>" (the '
        'held-out examples), "shipped:<lang>@<hash>" (the shipped set of the language) '
        "(schema 1.2; before: the held-out set only).",
    )
    language: LanguageReport | None = None
    preference: PreferenceReport | None = None
    benchmarks: list[BenchmarkResult] = Field(default_factory=list)
    judge: JudgeReport | None = None
    versus_base: VersusBaseReport | None = None
    skipped: dict[str, str] = Field(
        default_factory=dict, description="Section or item -> why it was not computed."
    )
    timings_s: dict[str, float] = Field(default_factory=dict)
