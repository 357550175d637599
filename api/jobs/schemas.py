"""Job schemas: the POST body is clo.spec.JobSpec; these are what the API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from clo.spec import JobSpec

JobCreate = JobSpec


class ErrorInfo(BaseModel):
    type: str
    code: str
    message: str
    param: str | None = None


class Progress(BaseModel):
    step: int | None = None
    total_steps: int | None = None
    percent: float | None = None
    eta_seconds: float | None = None


class ArtifactRead(BaseModel):
    name: str
    kind: str
    size: int
    sha256: str
    created_at: datetime
    download_url: str


class JobRead(BaseModel):
    id: str
    status: str = Field(description="queued|running|succeeded|failed|cancelling|cancelled")
    stage: str | None = Field(None, description="translating|training|evaluating|packaging")
    base_model: str
    target_language: str
    method: str
    data_size: int
    progress: Progress
    queue_position: int | None = Field(None, description="1 = next to run; queued jobs only.")
    attempt: int
    max_attempts: int
    error: ErrorInfo | None = None
    metrics_summary: dict[str, Any] | None = None
    evaluation_ready: bool
    artifacts: list[ArtifactRead]
    spec: dict[str, Any]
    notes: list[str] = Field(
        default_factory=list,
        description="What the service assumed about the request, e.g. a language tag reduced "
        "to the code the models know ('zh-Hant': the script is not kept).",
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested_at: datetime | None = None


class JobList(BaseModel):
    data: list[JobRead]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")
    has_more: bool


class EventRead(BaseModel):
    id: int = Field(description="Per-job sequence number; the SSE event id.")
    type: str
    message: str
    data: dict[str, Any] | None = None
    created_at: datetime


class EventList(BaseModel):
    data: list[EventRead]
    last_id: int = Field(description="Pass as `after` to get only newer events.")


class MetricPoint(BaseModel):
    step: int
    value: float


class MetricsRead(BaseModel):
    job_id: str
    curves: dict[str, list[MetricPoint]]
    summary: dict[str, Any] | None = None


class EvaluationRead(BaseModel):
    job_id: str
    report: dict[str, Any]
