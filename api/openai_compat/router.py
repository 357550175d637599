"""OpenAI-compatible fine-tuning endpoints: /v1/fine_tuning/jobs/... (docs/OPENAI.md).

Files and models share their native paths (api/files, api/catalogue), whose responses are
OpenAI-shaped supersets; native /v1/jobs stays the primary API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from api.deps import CurrentJob, CurrentTenant, SessionDep, SettingsDep
from api.errors import COMMON_ERRORS, InvalidRequest
from api.openai_compat import service
from api.openai_compat.schemas import (
    FineTuningJob,
    FineTuningJobCheckpointList,
    FineTuningJobCreate,
    FineTuningJobEventList,
    FineTuningJobList,
)

router = APIRouter(
    prefix="/v1/fine_tuning/jobs", tags=["openai-compatible"], responses=COMMON_ERRORS
)

After = Annotated[
    str | None, Query(max_length=200, description="The last id of the previous page.")
]


@router.post("", response_model=FineTuningJob)
def create_job(
    body: FineTuningJobCreate,
    request: Request,
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> FineTuningJob:
    """Create a job the OpenAI way; it is the same job GET /v1/jobs/{id} shows."""
    job = service.create_job(
        session,
        tenant,
        body,
        settings=settings,
        enqueuer=request.app.state.enqueuer,
        idempotency_key=idempotency_key,
    )
    request.state.job_id = job.id
    return job


@router.get("", response_model=FineTuningJobList)
def list_jobs(
    request: Request,
    session: SessionDep,
    tenant: CurrentTenant,
    after: After = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> FineTuningJobList:
    """Newest first; the SDK pages on by `after` while has_more is true."""
    if any(key.startswith("metadata") for key in request.query_params):
        raise InvalidRequest(
            "filtering jobs by metadata is not supported; list all and filter the data",
            code="unsupported_parameter",
            param="metadata",
        )
    return service.list_jobs(
        session, tenant, after=after, limit=limit, cursors=request.app.state.cursors
    )


@router.get("/{job_id}", response_model=FineTuningJob)
def get_job(session: SessionDep, tenant: CurrentTenant, job: CurrentJob) -> FineTuningJob:
    return service.get_job(session, tenant, job)


@router.post("/{job_id}/cancel", response_model=FineTuningJob)
def cancel_job(
    request: Request,
    session: SessionDep,
    tenant: CurrentTenant,
    job: CurrentJob,
    settings: SettingsDep,
) -> FineTuningJob:
    """A queued job is cancelled at once; a running one reads `running` until it stops."""
    return service.cancel_job(session, tenant, job, settings, request.app.state.enqueuer)


@router.get("/{job_id}/events", response_model=FineTuningJobEventList)
def list_events(
    session: SessionDep,
    job: CurrentJob,
    after: After = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> FineTuningJobEventList:
    """Newest first, as OpenAI lists them."""
    return service.list_events(session, job, after=after, limit=limit)


@router.get("/{job_id}/checkpoints", response_model=FineTuningJobCheckpointList)
def list_checkpoints(
    session: SessionDep,
    job: CurrentJob,
    after: After = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> FineTuningJobCheckpointList:
    """Checkpoints the job saved (listed, not downloadable: GET /v1/jobs/{id}/artifacts)."""
    return service.list_checkpoints(session, job, after=after, limit=limit)
