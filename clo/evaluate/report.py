"""The evaluation report: a versioned, stable JSON schema (pydantic models).

`EvaluationReport.model_dump(mode="json")` is what the service stores and serves at
`GET /v1/jobs/{id}/evaluation`. Compatible additions (new optional fields) bump the minor
version; renaming or removing a field bumps the major version.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.0"

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


class AnswerSample(_Model):
    prompt_language: str = Field(description="Language code the prompt (and answer) should be in.")
    prompt: str
    answer: str
    verdict: Literal["pass", "fail", "no_kept_lines"]
    lines: list[LineResult]


class LanguageRate(_Model):
    expected_language: str
    total: int = Field(description="Answers generated.")
    judged: int = Field(description="Answers with at least one checked line (the denominator).")
    passed: int
    failed: int
    no_kept_lines: int = Field(description="Answers with no line long enough to check.")
    pass_rate: float | None = Field(description="Line-level pass rate (LCB LPR) over judged.")
    english_rate: float | None = Field(description="Share of judged answers entirely in English.")


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
    schema_version: Literal["1.0"] = "1.0"  # = SCHEMA_VERSION
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
