"""Job endpoints: handlers validate input, resolve dependencies, call one service function."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.deps import (
    CurrentJob,
    CurrentTenant,
    SessionDep,
    SettingsDep,
    bearer_secret,
    read_connection,
)
from api.errors import COMMON_ERRORS
from api.idempotency import answer_created, create_responses
from api.jobs import keyed, service
from api.jobs.schemas import (
    EvaluationRead,
    EventList,
    JobCreate,
    JobList,
    JobRead,
    MetricsRead,
)
from api.jobs.sse import StreamFrom, event_stream
from persistence.models import JOB_STATUSES
from persistence.repositories.jobs import JobFilters

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=COMMON_ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=JobRead,
    responses=create_responses(JobRead, "the job created before"),
)
def create_job(
    body: JobCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobRead:
    """Submit a job. A retry with the same Idempotency-Key and body returns the same job (200)."""
    job, created = service.create_job(
        session,
        tenant,
        body,
        settings=settings,
        enqueuer=request.app.state.enqueuer,
        idempotency_key=idempotency_key,
    )
    request.state.job_id = str(job.id)
    answer_created(response, created, f"/v1/jobs/{job.id}")
    return service.to_read(session, job, new=created)


@router.get("", response_model=JobList)
def list_jobs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(JOB_STATUSES) + ")$")] = None,
    target_language: Annotated[str | None, Query(max_length=16)] = None,
    base_model: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Newest first; follow next_cursor until has_more is false."""
    # Polled like the status read, so read like it: one thread hop, the key checked by the
    # statement that reads the page, autocommit (api/jobs/keyed.py; issue 15).
    filters = JobFilters(status=status, target_language=target_language, base_model=base_model)
    secret = bearer_secret(request)
    with read_connection(request) as conn:
        tenant_name, page = keyed.list_jobs(
            conn,
            secret,
            limit=limit,
            cursor=cursor,
            filters=filters,
            cursors=request.app.state.cursors,
        )
    request.state.tenant = tenant_name
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/{job_id}", response_model=JobRead)
def get_job(job_id: str, request: Request) -> Response:
    # The hottest endpoint (clients poll it): one thread hop and one autocommit statement
    # that checks the key and reads job, artifacts and queue position together, instead of
    # the session / tenant / job dependencies' hops and round trips.
    secret = bearer_secret(request)
    with read_connection(request) as conn:
        tenant_name, job = service.read_job_for_key(conn, secret, job_id)
    request.state.tenant = tenant_name
    request.state.job_id = job.id
    return Response(job.model_dump_json(), media_type="application/json")


@router.post("/{job_id}/cancel", response_model=JobRead)
def cancel_job(
    request: Request, session: SessionDep, job: CurrentJob, settings: SettingsDep
) -> JobRead:
    """queued -> cancelled at once; running -> cancelling until the worker stops it."""
    enqueuer = request.app.state.enqueuer
    cancelled = service.cancel_job(session, job, settings=settings, enqueuer=enqueuer)
    return service.to_read(session, cancelled)


@router.get("/{job_id}/events", response_model=EventList)
def list_events(
    job_id: str,
    request: Request,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Response:
    # One thread hop and one statement that checks the key and the job's owner and reads
    # the events (api/jobs/keyed.py; issue 15), as the status read does.
    secret = bearer_secret(request)
    with read_connection(request) as conn:
        tenant_name, owned_id, events = keyed.list_events(
            conn, secret, job_id, after=after, limit=limit
        )
    request.state.tenant = tenant_name
    request.state.job_id = owned_id
    return Response(events.model_dump_json(), media_type="application/json")


# Errors stay JSON on the event-stream route: FastAPI would document a route's extra responses
# in the route's own media type (text/event-stream); a route-level entry overrides the router's.
_JSON_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": doc["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }
    for status, doc in COMMON_ERRORS.items()
}


@router.get("/{job_id}/events/stream", response_class=EventSourceResponse, responses=_JSON_ERRORS)
async def stream_events(
    request: Request, start: StreamFrom, settings: SettingsDep
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events; reconnects resume after the Last-Event-ID header (or `after`)."""
    factory = request.app.state.session_factory
    async for event in event_stream(
        request, factory, start.job_id, start.after, settings.sse_poll_seconds
    ):
        yield event


@router.get("/{job_id}/metrics", response_model=MetricsRead)
def get_metrics(session: SessionDep, job: CurrentJob) -> MetricsRead:
    """Training curves: for each metric, its value at each logged step."""
    return service.get_metrics(session, job)


@router.get("/{job_id}/evaluation", response_model=EvaluationRead)
def get_evaluation(job: CurrentJob) -> EvaluationRead:
    return service.get_evaluation(job)
