"""Typed evaluation options, stored in every report so a number can be traced to its settings."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clo.evaluate.verdict import VerdictConfig

BenchmarkName = Literal["belebele", "mmmlu"]
BenchmarkSource = Literal["auto", "hub", "local"]
ALL_BENCHMARKS: tuple[BenchmarkName, ...] = ("belebele", "mmmlu")


class EvalConfig(BaseModel):
    """Every knob of one evaluation run; the defaults suit a few dozen held-out examples."""

    model_config = ConfigDict(extra="forbid")

    # generation + right-language rate
    max_new_tokens: int = Field(
        default=128, ge=1, le=4096, description="Tokens generated per answer."
    )
    generation_batch_size: int = Field(
        default=8, ge=1, le=512, description="Prompts per generate call."
    )
    max_prompt_tokens: int = Field(
        default=512,
        ge=8,
        le=32768,
        description="Prompt tokens kept (from the left) when generating.",
    )
    min_words_per_line: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Lines with fewer words are not language-checked (LCB: 5).",
    )
    detector_languages: list[str] | None = Field(
        default=None,
        description="Language codes lingua chooses among; None: English, the target, the paper's "
        "languages and a few major ones (see language_check.DEFAULT_DETECTOR_CODES).",
    )
    sample_size: int = Field(
        default=8, ge=0, le=1000, description="Answers kept in the report per prompt language."
    )
    prompt_set_limit: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="Shipped evaluation prompts of the target language (and their English "
        "twins) answered besides the held-out prompts; 0: held-out prompts only.",
    )
    verdict: VerdictConfig = Field(
        default_factory=VerdictConfig,
        description="Thresholds of the usable-answer verdict (empty, wrong language, echo, loop).",
    )
    # preference accuracy + NLL
    beta: float = Field(
        default=0.1, gt=0.0, le=10.0, description="β scaling the implicit DPO rewards."
    )
    scoring_batch_size: int = Field(
        default=8, ge=1, le=512, description="Sequences per scoring forward."
    )
    max_length: int = Field(
        default=1024, ge=16, le=65536, description="Prompt+response tokens kept when scoring."
    )
    # multiple choice benchmarks
    benchmarks: list[BenchmarkName] = Field(
        default_factory=lambda: list(ALL_BENCHMARKS),
        description="Multiple-choice benchmarks scored by option log-likelihood.",
    )
    benchmark_source: BenchmarkSource = Field(
        default="auto",
        description="hub: Hugging Face datasets; local: shipped or given files; auto: hub, "
        "falling back to local when the hub is unreachable.",
    )
    benchmark_files: dict[str, str] = Field(
        default_factory=dict,
        description='Local files in the hub schema, keyed "<benchmark>:<lang>" '
        '(e.g. "belebele:de"); they override the shipped fixtures.',
    )
    benchmark_limit: int | None = Field(
        default=200,
        ge=1,
        description="Items scored per benchmark and language, a seeded sample (None: all).",
    )
    benchmark_english: bool = Field(
        default=True, description="Also score English (catch forgetting)."
    )
    # the base model beside the trained one
    compare_base: bool = Field(
        default=True,
        description="Also score the base model (an adapter's, with the adapter disabled) on "
        "the same prompts and report base | trained | delta.",
    )
    bootstrap_resamples: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="Paired bootstrap resamples of each base -> trained difference.",
    )
    # judged win rate
    judge_english: bool = Field(
        default=True, description="Also judge answers to the English prompts."
    )
    judge_concurrency: int = Field(default=4, ge=1, le=64, description="Judge requests in flight.")
    judge_sample_size: int = Field(
        default=4, ge=0, le=1000, description="Judged pairs kept in report."
    )

    @field_validator("detector_languages")
    @classmethod
    def _known_codes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        from clo.languages import get_language

        return [get_language(code).code for code in value]

    @field_validator("benchmark_files")
    @classmethod
    def _file_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            name, _, lang = key.partition(":")
            if name not in ("belebele", "mmmlu") or not lang:
                raise ValueError(
                    f'benchmark_files key {key!r} must look like "belebele:de" or "mmmlu:en"'
                )
        return value

    @model_validator(mode="after")
    def _prompt_fits(self) -> "EvalConfig":
        if self.max_prompt_tokens >= self.max_length:
            raise ValueError("max_prompt_tokens must be smaller than max_length")
        return self
