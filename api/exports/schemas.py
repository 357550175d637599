"""Export schemas: the POST body (validated here, so a bad field is a 422 naming it) and the
export resource the API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from api.jobs.schemas import ArtifactRead, ErrorInfo

ExportFormat = Literal["lora", "merged"]
ExportDtype = Literal["trained", "bf16", "fp16", "fp32"]
ExportStatus = Literal["queued", "running", "succeeded", "failed"]
DEFAULT_RANK = 16
# vLLM's largest --max-lora-rank is 512; SVD past this size is a full-rank copy anyway
MAX_RANK = 1024


class ExportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: ExportFormat = Field(
        description="lora: a plain PEFT LoRA extracted by truncated SVD of the weight change "
        "(no modules_to_save: vLLM, TGI and llama.cpp load it); merged: the adapter merged "
        "into its base, a full model."
    )
    rank: int | None = Field(
        None,
        strict=True,  # an integer: not true, "16" or 16.0
        ge=1,
        le=MAX_RANK,
        description=f"LoRA rank, lora only (default {DEFAULT_RANK}); at most the largest "
        "projection's smaller dimension (the export fails with param rank otherwise).",
    )
    dtype: ExportDtype = Field(
        "trained",
        description="Weights dtype: trained keeps the dtype the job's own export holds the "
        "trained weights in (its export_dtype, by default the base model's); bf16, fp16, fp32 "
        "cast to that.",
    )

    @field_validator("rank")
    @classmethod
    def _lora_only(cls, rank: int | None, info: ValidationInfo) -> int | None:
        if rank is not None and info.data.get("format") == "merged":
            raise ValueError("rank applies to format 'lora' only; a merged model has no rank")
        return rank


class ExportOptions(BaseModel):
    rank: int | None = Field(None, description="LoRA rank (lora only).")
    dtype: ExportDtype


class ExportReport(BaseModel):
    """What the export measured (lora: from clo.lora_extract's report)."""

    weights_dtype: str | None = Field(None, description="dtype the weights were written in.")
    rank: int | None = None
    alpha: float | None = None
    target_modules: list[str] | None = None
    approximation_error: float | None = Field(
        None,
        description="lora: relative Frobenius error of the weight change over all projections, "
        "||delta - s*B@A|| / ||delta||.",
    )
    heldout_mean_abs_delta_logp: float | None = Field(
        None,
        description="lora: mean |log p(extracted) - log p(exact adapter)| per held-out sequence "
        "(summed response log-prob); null when the job held nothing out.",
    )
    heldout_max_abs_delta_logp: float | None = None
    heldout_sequences: int | None = None
    training_mean_abs_delta_logp: float | None = Field(
        None,
        description="lora: how far training itself moved those log-probs (exact adapter vs "
        "base), the scale to judge the error against.",
    )
    not_represented: int | None = Field(
        None, description="lora: tensors LoRA cannot hold (biases, norms), left out."
    )


class ExportRead(BaseModel):
    id: str
    job_id: str
    status: ExportStatus
    format: ExportFormat
    options: ExportOptions
    artifact_name: str = Field(
        description="The job artifact the export writes (listed with the job's artifacts "
        "once succeeded)."
    )
    artifact: ArtifactRead | None = Field(
        None, description="The stored artifact: set once succeeded (null if since deleted)."
    )
    report: ExportReport | None = None
    error: ErrorInfo | None = None
    attempt: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class ExportList(BaseModel):
    data: list[ExportRead] = Field(description="Newest first.")
