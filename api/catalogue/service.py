"""Models a client can name: the allow-list and the tenant's fine-tuned models (succeeded jobs).

One listing for both surfaces: native clients read name/kind/source, OpenAI clients read
id/object/created/owned_by (`client.models.list()` needs the `{"object": "list"}` envelope).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.errors import NotFound
from persistence.models import Job, Tenant
from persistence.repositories import jobs as jobs_repo
from persistence.settings import Settings
from service.catalog import as_uuid

# The owner OpenAI clients see for allow-listed base models (OpenAI says "system"/"openai").
SYSTEM_OWNER = "system"
# A listing shows at most this many fine-tuned models, newest first (OpenAI's list is not
# paginated either); GET /v1/jobs?status=succeeded pages through all of them.
MAX_FINE_TUNED_LISTED = 1000


class ModelRead(BaseModel):
    """OpenAI's `model` object plus this service's fields."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="Unix seconds; 0 for allow-listed base models.")
    owned_by: str
    name: str = Field(description="Same as id.")
    kind: str = Field(description="causal_lm | translator | ... | fine_tuned")
    source: str | None = None
    revision: str | None = None
    description: str = ""
    base_model: str | None = Field(None, description="Fine-tuned models: the base model.")
    job_id: str | None = Field(None, description="Fine-tuned models: the job that made it.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelRead]


def fine_tuned_model_name(base_model: str, job_id: Any, metadata: dict[str, Any]) -> str:
    """`ft:<base>[:<suffix>]:<job id>`, after OpenAI's `ft:<base>:<org>:<suffix>:<id>`."""
    suffix = metadata.get("suffix")
    middle = f":{suffix}" if suffix else ""
    return f"ft:{base_model}{middle}:{job_id}"


def _fine_tuned_read(job: Job, owner: str) -> ModelRead:
    name = fine_tuned_model_name(job.base_model, job.id, job.spec.get("metadata") or {})
    finished = job.finished_at or job.updated_at
    return ModelRead(
        id=name,
        created=int(finished.timestamp()),
        owned_by=owner,
        name=name,
        kind="fine_tuned",
        base_model=job.base_model,
        job_id=str(job.id),
        description=f"{job.method} adapter of {job.base_model} for {job.target_language}",
    )


def _allow_listed(settings: Settings) -> list[ModelRead]:
    """The allow-list; local folders are named but their paths are not disclosed."""
    return [
        ModelRead(
            id=name,
            created=0,
            owned_by=SYSTEM_OWNER,
            name=name,
            kind=entry.kind,
            source=None if entry.is_local else entry.source,
            revision=entry.revision,
            description=entry.description,
        )
        for name, entry in sorted(settings.allowed_models().items())
    ]


def list_models(session: Session, tenant: Tenant, settings: Settings) -> ModelList:
    rows = jobs_repo.list_jobs(
        session,
        tenant.id,
        limit=MAX_FINE_TUNED_LISTED,
        filters=jobs_repo.JobFilters(status="succeeded"),
    )
    tuned = [_fine_tuned_read(job, tenant.name) for job, _ in rows]
    return ModelList(data=_allow_listed(settings) + tuned)


def get_model(session: Session, tenant: Tenant, settings: Settings, model_id: str) -> ModelRead:
    """An allow-listed model, or the tenant's fine-tuned model by its `ft:` name; else 404."""
    for model in _allow_listed(settings):
        if model.id == model_id:
            return model
    job = _succeeded_job(session, tenant.id, model_id) if model_id.startswith("ft:") else None
    if job is not None:
        found = _fine_tuned_read(job, tenant.name)
        if found.id == model_id:
            return found
    raise NotFound(f"model {model_id[:200]!r} not found (GET /v1/models)", code="model_not_found")


def _succeeded_job(session: Session, tenant_id: uuid.UUID, name: str) -> Job | None:
    job_id = as_uuid(name.rsplit(":", 1)[-1])
    job = jobs_repo.get_job_for_tenant(session, tenant_id, job_id) if job_id else None
    return job if job is not None and job.status == "succeeded" else None
