"""Request and response shapes of OpenAI's fine-tuning API, as far as this service maps them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Auto = Literal["auto"]


class OpenAIHyperparameters(BaseModel):
    """OpenAI's hyperparameters; "auto" (or leaving one out) keeps this service's default."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: int | Auto | None = Field(None, description="-> hyperparameters.epochs")
    batch_size: int | Auto | None = Field(None, description="-> hyperparameters.batch_size")
    learning_rate_multiplier: float | Auto | None = Field(
        None, description="x the default learning rate (5e-6) -> hyperparameters.learning_rate"
    )
    beta: float | Auto | None = Field(None, description="clo and dpo: -> hyperparameters.beta")


class MethodOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: OpenAIHyperparameters | None = None


class DpoOptions(MethodOptions):
    sft_first: bool = Field(
        False, description="Extension: SFT on the translated answers first (method sft+dpo)."
    )


class OpenAIMethod(BaseModel):
    """`type` picks the method; its options sit under the key of the same name."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["clo", "supervised", "dpo", "reinforcement"]
    clo: MethodOptions | None = None
    supervised: MethodOptions | None = None
    dpo: DpoOptions | None = None
    reinforcement: dict[str, Any] | None = None


class FineTuningJobCreate(BaseModel):
    """POST /v1/fine_tuning/jobs; fields past OpenAI's are extensions (client `extra_body`)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., min_length=1, max_length=200, description="-> base_model")
    training_file: str = Field(
        ..., min_length=1, max_length=64, description="An uploaded file id -> seed_data"
    )
    method: OpenAIMethod | None = Field(None, description="Default: {type: clo}.")
    hyperparameters: OpenAIHyperparameters | None = Field(
        None, description="Deprecated by OpenAI in favour of method.<type>.hyperparameters."
    )
    seed: int | None = Field(None, description="-> hyperparameters.seed")
    suffix: str | None = Field(
        None, max_length=64, description="Part of fine_tuned_model; stored as metadata.suffix."
    )
    metadata: dict[str, str] | None = Field(
        None,
        description="Stored on the job; target_language and data_size may be given here "
        "instead of as top-level extensions.",
    )
    validation_file: str | None = Field(None, description="Not supported: must be left out.")
    integrations: list[dict[str, Any]] | None = Field(
        None, description="Not supported: must be left out."
    )
    target_language: str | None = Field(
        None, max_length=16, description="Extension (required here or in metadata)."
    )
    data_size: int | None = Field(
        None, description="Extension: English examples used; default all of training_file's."
    )
    clo: dict[str, Any] | None = Field(
        None,
        description="Extension: any other field of the native POST /v1/jobs body "
        "(trainable, translator, evaluation, hyperparameters.max_steps, ...).",
    )


class JobErrorOut(BaseModel):
    code: str
    message: str
    param: str | None = None


class HyperparametersOut(BaseModel):
    n_epochs: float | None = None
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None


class FineTuningJob(BaseModel):
    """OpenAI's `fine_tuning.job`, plus target_language, data_size, stage, progress, clo_status."""

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    finished_at: int | None = None
    estimated_finish: int | None = Field(
        None, description="Unix seconds: the current stage's estimated end (running jobs)."
    )
    error: JobErrorOut | None = None
    fine_tuned_model: str | None = None
    hyperparameters: HyperparametersOut
    method: dict[str, Any]
    model: str
    organization_id: str
    result_files: list[str] = Field(description="Download paths of the job's artifacts.")
    seed: int
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    trained_tokens: int | None = None
    training_file: str | None = None
    validation_file: str | None = None
    integrations: list[dict[str, Any]] = []
    metadata: dict[str, str] | None = None
    target_language: str
    data_size: int
    stage: str | None = None
    progress: dict[str, Any]
    clo_status: str = Field(description="The native status (adds cancelling).")


class FineTuningJobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    has_more: bool


class FineTuningJobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = Field(None, description="`event`: the native event type.")


class FineTuningJobEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobEvent]
    has_more: bool


class CheckpointMetrics(BaseModel):
    step: float | None = None
    train_loss: float | None = None


class FineTuningJobCheckpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int


class FineTuningJobCheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobCheckpoint]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
