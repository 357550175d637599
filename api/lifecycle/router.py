"""DELETE /v1/jobs/{id} and DELETE /v1/jobs/{id}/artifacts/{name}."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import CurrentJob, SessionDep, StoreDep
from api.errors import COMMON_ERRORS, ErrorEnvelope
from api.lifecycle import service

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=COMMON_ERRORS)

_CONFLICT: dict[int | str, dict[str, object]] = {
    409: {"model": ErrorEnvelope, "description": "The job is queued, running or cancelling"}
}


@router.delete("/{job_id}", status_code=204, response_class=Response, responses=_CONFLICT)
def delete_job(session: SessionDep, job: CurrentJob, store: StoreDep) -> Response:
    """Delete a finished job with its events, metrics and artifacts (their bytes too)."""
    service.delete_job(session, job, store)
    return Response(status_code=204)


@router.delete(
    "/{job_id}/artifacts/{name}", status_code=204, response_class=Response, responses=_CONFLICT
)
def delete_artifact(name: str, session: SessionDep, job: CurrentJob, store: StoreDep) -> Response:
    """Delete one artifact of a finished job; its bytes are freed."""
    service.delete_artifact(session, job, name, store)
    return Response(status_code=204)
