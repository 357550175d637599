"""Comparison schemas: one request trains several methods on the same data; one report compares."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from clo.config import Method, SftVariant, Trainable

MAX_RUNS = 8


class RunCreate(BaseModel):
    """One method to train; everything else comes from `base`."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(
        ...,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$",
        description="Names the run in the report, e.g. clo or sft.",
    )
    method: Method
    sft_variant: SftVariant = "target"
    trainable: Trainable | None = Field(None, description="None: base.trainable, or the default.")
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of base.hyperparameters for this run."
    )


# The paper's table row: CLO against SFT on the translated target-language data.
DEFAULT_RUNS = (
    RunCreate(label="clo", method="clo"),
    RunCreate(label="sft", method="sft", sft_variant="target"),
)


class ComparisonCreate(BaseModel):
    """Train every run on the same seed data, data_size, seed and translator, then compare."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    base: dict[str, Any] = Field(
        ...,
        description="POST /v1/jobs fields shared by every run (base_model, target_language, "
        "data_size, seed_data, translator, hyperparameters, evaluation, ...); method and "
        "sft_variant are set per run.",
    )
    runs: list[RunCreate] | None = Field(
        None,
        min_length=1,
        max_length=MAX_RUNS,
        description="Omitted: CLO and SFT on the target language (the paper's comparison).",
    )


class RunRead(BaseModel):
    label: str
    job_id: str
    method: str
    sft_variant: str | None = None
    trainable: str | None = None
    status: str
    stage: str | None = None
    percent: float | None = None
    error: dict[str, Any] | None = None
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="The job's metrics_summary without the translation."
    )
    evaluation_ready: bool


class ComparisonSummary(BaseModel):
    id: str
    name: str | None = None
    status: Literal["running", "succeeded", "failed"] = Field(
        description="running: a job is unfinished; succeeded: all succeeded; failed: all "
        "finished and at least one did not succeed."
    )
    base_model: str
    target_language: str
    runs: list[RunRead]
    created_at: datetime


class ComparisonRead(ComparisonSummary):
    report: dict[str, Any] | None = Field(
        None,
        description="Side by side, once every job succeeded: one value per metric and run "
        "label, the best run per metric, and `paired`: each pair of runs' usable "
        "right-language rates on the same shipped prompts with a paired bootstrap interval "
        "and McNemar's p (clo.evaluate.compare_reports).",
    )
    report_note: str | None = Field(None, description="Why there is no report (yet).")


class ComparisonList(BaseModel):
    data: list[ComparisonSummary]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")
    has_more: bool
