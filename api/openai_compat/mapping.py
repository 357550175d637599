"""Translation between OpenAI's fine-tuning shapes and the native job spec and views.

Pure functions: no database, no HTTP. Validation stays native (clo.spec.JobSpec and the
job service); what is translated here is field names, units and error `param`s.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from api.catalogue.service import fine_tuned_model_name
from api.errors import InvalidRequest
from api.jobs.schemas import EventRead, JobRead
from api.openai_compat.schemas import (
    CheckpointMetrics,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobCreate,
    FineTuningJobEvent,
    HyperparametersOut,
    JobErrorOut,
    OpenAIHyperparameters,
)
from clo.spec import Hyperparameters

# OpenAI's learning_rate_multiplier scales this (the native default, the paper's rate).
BASE_LEARNING_RATE: float = Hyperparameters.model_fields["learning_rate"].default

# OpenAI method type -> native method (dpo becomes sft+dpo with dpo.sft_first).
NATIVE_METHODS = {"clo": "clo", "supervised": "sft", "dpo": "dpo"}
OPENAI_METHODS = {"clo": "clo", "sft": "supervised", "dpo": "dpo", "sft+dpo": "dpo"}

# Native status -> OpenAI status: OpenAI has no "cancelling" (clo_status keeps it).
OPENAI_STATUS = {
    "queued": "queued",
    "running": "running",
    "cancelling": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}

ERROR_EVENTS = frozenset({"failed", "abandoned"})
WARN_EVENTS = frozenset({"released", "requeued", "lease_expired", "cancelling", "cancelled"})

# Native spec fields the `clo` extension may not set: each has an OpenAI field or extension.
RESERVED = {
    "base_model": "model",
    "seed_data": "training_file",
    "method": "method.type",
    "target_language": "target_language",
    "data_size": "data_size",
    "metadata": "metadata",
}
MAX_DATA_SIZE = 100_000


@dataclass
class Translation:
    """A native spec body and, per native field path, the request field it came from."""

    spec: dict[str, Any]
    origins: dict[str, str] = field(default_factory=dict)

    def param(self, native: str | None) -> str | None:
        """The request's name for a native field path (the longest translated prefix)."""
        if not native:
            return native
        parts = native.split(".")
        for cut in range(len(parts), 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in self.origins:
                return ".".join([self.origins[prefix], *parts[cut:]])
        return native


def _unsupported(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(
        f"{param}: {what} is not supported by this service (docs/OPENAI.md)",
        code="unsupported_parameter",
        param=param,
    )


def needs_file_size(body: FineTuningJobCreate) -> bool:
    """Whether data_size must default to the number of examples in training_file."""
    return body.data_size is None and "data_size" not in (body.metadata or {})


def to_native(body: FineTuningJobCreate, file_examples: int | None) -> Translation:
    """The native POST /v1/jobs body for an OpenAI create request (not yet validated)."""
    if body.validation_file is not None:
        raise _unsupported("validation_file", "a validation file")
    if body.integrations:
        raise _unsupported("integrations", "integrations (wandb)")
    method_type = body.method.type if body.method else "clo"
    if method_type == "reinforcement":
        raise _unsupported("method.type", "reinforcement fine-tuning")
    extension = copy.deepcopy(body.clo or {})
    for key in extension:
        if key in RESERVED:
            raise InvalidRequest(
                f"clo.{key} cannot be set in the clo extension; use {RESERVED[key]}",
                code="reserved_field",
                param=f"clo.{key}",
            )
    out = Translation(spec=extension, origins={key: f"clo.{key}" for key in extension})
    spec, origins = out.spec, out.origins
    metadata = dict(body.metadata or {})

    spec["base_model"], origins["base_model"] = body.model, "model"
    spec["seed_data"] = {"source": "file", "file_id": body.training_file}
    origins["seed_data"] = origins["seed_data.file_id"] = "training_file"

    if body.target_language is not None:
        spec["target_language"], origins["target_language"] = (
            body.target_language,
            "target_language",
        )
    elif "target_language" in metadata:
        spec["target_language"] = metadata["target_language"]
        origins["target_language"] = "metadata.target_language"
    else:
        raise InvalidRequest(
            "target_language is required: send it as an extension field (the SDK's "
            "extra_body={'target_language': 'sw'}) or in metadata",
            code="missing_target_language",
            param="target_language",
        )
    spec["data_size"], origins["data_size"] = _data_size(body, metadata, file_examples)

    native_method = NATIVE_METHODS[method_type]
    options = getattr(body.method, method_type, None) if body.method else None
    if method_type == "dpo" and options is not None and getattr(options, "sft_first", False):
        native_method = "sft+dpo"
    spec["method"], origins["method"] = native_method, "method.type"

    hyper = spec.setdefault("hyperparameters", {})
    if isinstance(hyper, dict):  # anything else: JobSpec names clo.hyperparameters
        _apply(hyper, origins, body.hyperparameters, "hyperparameters", method_type)
        method_hp = options.hyperparameters if options is not None else None
        _apply(hyper, origins, method_hp, f"method.{method_type}.hyperparameters", method_type)
        if body.seed is not None:
            hyper["seed"], origins["hyperparameters.seed"] = body.seed, "seed"

    if body.suffix:
        metadata["suffix"] = body.suffix
        origins["metadata.suffix"] = "suffix"
    spec["metadata"] = metadata
    origins.setdefault("metadata", "metadata")
    return out


def _data_size(
    body: FineTuningJobCreate, metadata: dict[str, str], file_examples: int | None
) -> tuple[int, str]:
    if body.data_size is not None:
        return body.data_size, "data_size"
    if "data_size" in metadata:
        text = metadata["data_size"]
        if not text.isdigit():
            raise InvalidRequest(
                f"metadata.data_size must be a whole number, not {text[:20]!r}",
                code="invalid_data_size",
                param="metadata.data_size",
            )
        return int(text), "metadata.data_size"
    # Every example of the uploaded file, up to the native limit.
    return min(file_examples or 0, MAX_DATA_SIZE), "training_file"


def _apply(
    hyper: dict[str, Any],
    origins: dict[str, str],
    given: OpenAIHyperparameters | None,
    where: str,
    method_type: str,
) -> None:
    """OpenAI hyperparameters onto native ones; "auto" or absent keeps the native default."""
    if given is None:
        return
    values = {
        "epochs": ("n_epochs", given.n_epochs),
        "batch_size": ("batch_size", given.batch_size),
        "learning_rate": ("learning_rate_multiplier", given.learning_rate_multiplier),
        "beta": ("beta", given.beta),
    }
    for native, (name, value) in values.items():
        if value is None or value == "auto":
            continue
        if native == "beta" and method_type == "supervised":
            raise InvalidRequest(
                f"{where}.beta: beta applies to the clo and dpo methods, not supervised",
                code="unsupported_parameter",
                param=f"{where}.beta",
            )
        assert not isinstance(value, str)
        hyper[native] = value * BASE_LEARNING_RATE if native == "learning_rate" else value
        origins[f"hyperparameters.{native}"] = f"{where}.{name}"


def _unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def method_out(spec: dict[str, Any]) -> dict[str, Any]:
    """The job's method in OpenAI's shape, with its hyperparameters."""
    native = spec.get("method", "clo")
    kind = OPENAI_METHODS.get(native, native)
    hyper: dict[str, Any] = dict(hyperparameters_out(spec).model_dump())
    if kind != "supervised":
        hyper["beta"] = spec.get("hyperparameters", {}).get("beta")
    options: dict[str, Any] = {"hyperparameters": hyper}
    if kind == "dpo":
        options["sft_first"] = native == "sft+dpo"
    return {"type": kind, kind: options}


def hyperparameters_out(spec: dict[str, Any]) -> HyperparametersOut:
    hyper = spec.get("hyperparameters", {})
    rate = hyper.get("learning_rate")
    return HyperparametersOut(
        n_epochs=hyper.get("epochs"),
        batch_size=hyper.get("batch_size"),
        learning_rate_multiplier=round(rate / BASE_LEARNING_RATE, 6) if rate else None,
    )


def job_out(job: JobRead, organization: str) -> FineTuningJob:
    """A native job view as OpenAI's fine_tuning.job (extensions: see FineTuningJob)."""
    spec = job.spec
    seed = spec.get("seed_data", {})
    eta = job.progress.eta_seconds
    estimated = None
    if job.status == "running" and eta is not None:
        estimated = int(job.updated_at.timestamp() + eta)
    return FineTuningJob(
        id=job.id,
        created_at=int(job.created_at.timestamp()),
        finished_at=_unix(job.finished_at),
        estimated_finish=estimated,
        error=JobErrorOut(code=job.error.code, message=job.error.message, param=job.error.param)
        if job.error
        else None,
        fine_tuned_model=fine_tuned_model_name(job.base_model, job.id, spec.get("metadata") or {})
        if job.status == "succeeded"
        else None,
        hyperparameters=hyperparameters_out(spec),
        method=method_out(spec),
        model=job.base_model,
        organization_id=organization,
        result_files=[a.download_url for a in job.artifacts],
        seed=spec.get("hyperparameters", {}).get("seed", 0),
        status=OPENAI_STATUS.get(job.status, "running"),
        training_file=seed.get("file_id") if seed.get("source") == "file" else None,
        metadata=spec.get("metadata") or None,
        target_language=job.target_language,
        data_size=job.data_size,
        stage=job.stage,
        progress=job.progress.model_dump(),
        clo_status=job.status,
    )


def event_id(job_id: str, seq: int) -> str:
    return f"ftevent-{job_id}-{seq}"


def checkpoint_id(job_id: str, seq: int) -> str:
    return f"ftckpt-{job_id}-{seq}"


def seq_of(object_id: str, prefix: str, job_id: str) -> int:
    """The event seq inside an id this API issued for this job; 422 naming `after` if not."""
    head = f"{prefix}-{job_id}-"
    tail = object_id[len(head) :] if object_id.startswith(head) else ""
    if not tail.isdigit() or len(tail) > 10:
        raise InvalidRequest(
            f"after {object_id[:80]!r} is not an id of this job's list; pass the last id of "
            "the previous page",
            code="invalid_cursor",
            param="after",
        )
    return int(tail)


def event_out(job_id: str, event: EventRead) -> FineTuningJobEvent:
    level = (
        "error" if event.type in ERROR_EVENTS else "warn" if event.type in WARN_EVENTS else "info"
    )
    return FineTuningJobEvent(
        id=event_id(job_id, event.id),
        created_at=int(event.created_at.timestamp()),
        level=level,
        message=event.message or event.type,
        data={"event": event.type, **(event.data or {})},
    )


def checkpoint_out(
    job: JobRead, event: EventRead, loss_at: dict[int, float]
) -> FineTuningJobCheckpoint:
    """A `checkpoint` event as OpenAI's checkpoint object; its loss from the training curve."""
    step = int((event.data or {}).get("step") or 0)
    model = fine_tuned_model_name(job.base_model, job.id, job.spec.get("metadata") or {})
    return FineTuningJobCheckpoint(
        id=checkpoint_id(job.id, event.id),
        created_at=int(event.created_at.timestamp()),
        fine_tuned_model_checkpoint=f"{model}:ckpt-step-{step}",
        fine_tuning_job_id=job.id,
        metrics=CheckpointMetrics(step=step, train_loss=loss_at.get(step)),
        step_number=step,
    )
