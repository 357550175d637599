"""Job use cases: validate and create, read, list, cancel, events, metrics, evaluation.

Services flush, never commit: the request dependency owns the transaction.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import idempotency
from api.artifacts.service import artifact_read, list_artifacts, row_read
from api.deps import after_commit, invalid_key
from api.enqueue import JobEnqueuer
from api.errors import InvalidRequest, NotFound, TooManyRequests
from api.jobs.schemas import (
    ArtifactRead,
    ErrorInfo,
    EvaluationRead,
    EventList,
    EventRead,
    JobList,
    JobRead,
    MetricPoint,
    MetricsRead,
    Progress,
)
from api.pagination import CursorCodec
from clo.errors import CloError
from clo.resolve import ResolvedJob, resolve_job
from clo.spec import JobSpec
from persistence.logs import bind_job, current_request_id
from persistence.models import Job, JobEvent, Tenant
from persistence.repositories import admission
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import metrics as metrics_repo
from persistence.repositories import tenants as tenants_repo
from persistence.settings import Settings
from service import gpu_routing
from service.catalog import ServiceCatalog, as_uuid

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30


def create_job(
    session: Session,
    tenant: Tenant,
    spec: JobSpec,
    *,
    settings: Settings,
    enqueuer: JobEnqueuer,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Validate, store and (after commit) enqueue a job; (job, created) for idempotent retries."""
    request_hash = idempotency.request_hash(spec.model_dump(mode="json"))
    if idempotency_key:
        existing = jobs_repo.get_job_by_idempotency_key(session, tenant.id, idempotency_key)
        if existing is not None:
            return idempotency.same_request(existing, request_hash, "job"), False
    resolved = resolve_spec(session, tenant, spec, settings)
    tenants_repo.lock_tenant(session, tenant.id)  # serialise the limit checks per tenant
    check_queued_bound(session, tenant, settings, adding=1)
    insert = partial(
        jobs_repo.create_job,
        session,
        tenant_id=tenant.id,
        spec=resolved.spec.model_dump(mode="json"),
        resolved=resolved.model_dump(mode="json"),
        max_attempts=settings.max_attempts,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    if not idempotency_key:  # nothing unique to collide on: no savepoint round trips
        job = insert()
    else:
        try:
            with session.begin_nested():
                job = insert()
        except IntegrityError:
            # A concurrent retry with the same Idempotency-Key won the insert.
            existing = jobs_repo.get_job_by_idempotency_key(session, tenant.id, idempotency_key)
            if existing is None:
                raise
            return idempotency.same_request(existing, request_hash, "job"), False
    # The POST's request id goes with the job: into its first event, where the worker finds it
    # when a wake-up comes without it (a re-sent one), and into the wake-up's header.
    request_id = current_request_id()
    events_repo.append_event(
        session,
        job.id,
        "queued",
        f"job accepted: {job.method} {job.base_model} -> "
        f"{job.target_language}, {job.data_size} examples",
        {"request_id": request_id} if request_id else None,
    )
    # Woken now only within the tenant's running cap; the rest wait in Postgres for one of
    # its jobs to end (persistence.repositories.admission: fair order between tenants).
    cap = settings.max_concurrent_jobs_per_tenant
    if admission.is_admitted(session, tenant.id, job.id, cap):
        # The GPU class's queue where the fleet has classes (service.gpu_routing).
        queue = gpu_routing.queue_for(resolved, settings) if settings.gpu_classes else None
        after_commit(session, partial(_enqueue_as, enqueuer, str(job.id), request_id, queue))
    logger.info("job created", extra={"job_id": str(job.id), "tenant": tenant.name})
    return job, True


def _enqueue_as(
    enqueuer: JobEnqueuer, job_id: str, request_id: str | None, queue: str | None = None
) -> None:
    """Send the wake-up with the creating request's id bound (its header, its log lines)."""
    with bind_job(job_id, request_id):
        enqueuer(job_id, queue)


def check_queued_bound(session: Session, tenant: Tenant, settings: Settings, adding: int) -> None:
    """429 queued_job_limit when `adding` more queued jobs would pass the tenant's bound.
    Running jobs do not count: they are limited by waiting, not by refusing."""
    queued = admission.count_queued(session, tenant.id)
    limit = settings.max_queued_jobs_per_tenant
    if queued + adding > limit:
        raise TooManyRequests(
            f"{queued} jobs are queued; the limit is {limit} per tenant. "
            "Retry when some have started.",
            code="queued_job_limit",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def resolve_spec(
    session: Session, tenant: Tenant, spec: JobSpec, settings: Settings
) -> ResolvedJob:
    """The spec resolved against this deployment (clo.resolve); a refusal is a 422."""
    try:
        resolved = resolve_job(spec, ServiceCatalog(session, settings, tenant.id))
        # Its training memory, checked against the fleet's GPU classes (422 job_too_large).
        return gpu_routing.with_estimate(resolved, settings)
    except CloError as exc:
        raise InvalidRequest(str(exc), code=exc.code, param=exc.param) from None


def to_read(session: Session, job: Job, *, new: bool = False) -> JobRead:
    """The API view of one job; `new`: just inserted, so it has no artifacts yet."""
    artifacts = [] if new else list_artifacts(session, job)
    position = jobs_repo.queue_positions(session, [job]).get(job.id)
    return _job_read(job, artifacts, position, evaluation_ready=job.evaluation is not None)


def read_job_for_key(conn: Connection, secret: str, job_id: str) -> tuple[str, JobRead]:
    """GET /v1/jobs/{id}: (tenant name, job) in one statement that also checks the key.

    401 for an unknown or revoked key, 404 for a job the key's tenant does not own.
    """
    found = jobs_repo.read_job_for_key(conn, secret, as_uuid(job_id) or _NO_SUCH_ID)
    if found is None:
        raise invalid_key()
    row = found.job
    if row is None:
        raise NotFound(f"job {job_id!r} not found", code="job_not_found")
    artifacts = [
        artifact_read(
            row.id,
            a.artifact_name,
            a.artifact_kind,
            a.artifact_size,
            a.artifact_sha256,
            a.artifact_created_at,
        )
        for a in found.artifacts
    ]
    read = _job_read(row, artifacts, row.queue_position, evaluation_ready=row.evaluation_ready)
    return found.tenant_name, read


# Stands in for a malformed id, so the key is still checked (401 before 404, as elsewhere).
_NO_SUCH_ID = uuid.UUID(int=0)


def _job_read(
    job: Any, artifacts: list[ArtifactRead], queue_position: int | None, *, evaluation_ready: bool
) -> JobRead:
    """The API view of a job; `job` is the ORM row or a result row with the same columns."""
    return JobRead(
        id=str(job.id),
        status=job.status,
        stage=job.stage,
        base_model=job.base_model,
        target_language=job.target_language,
        method=job.method,
        data_size=job.data_size,
        progress=Progress(
            step=job.step,
            total_steps=job.total_steps,
            percent=job.percent,
            eta_seconds=job.eta_seconds,
        ),
        queue_position=queue_position,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        error=ErrorInfo.model_validate(job.error) if job.error else None,
        metrics_summary=job.metrics_summary,
        evaluation_ready=evaluation_ready,
        artifacts=artifacts,
        spec=job.spec,
        notes=_notes(getattr(job, "resolved", None)),
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        cancel_requested_at=job.cancel_requested_at,
    )


def list_jobs(
    session: Session,
    tenant: Tenant,
    *,
    limit: int,
    cursor: str | None,
    filters: jobs_repo.JobFilters,
    cursors: CursorCodec,
) -> JobList:
    before = cursors.decode(cursor) if cursor else None
    rows = jobs_repo.list_jobs(session, tenant.id, limit=limit + 1, filters=filters, before=before)
    page, has_more = rows[:limit], len(rows) > limit
    jobs = [job for job, _ in page]
    # Three queries per page, however long: the jobs, their artifacts, the queue positions.
    artifacts = artifacts_repo.artifacts_by_job(session, [job.id for job in jobs])
    positions = jobs_repo.queue_positions(session, jobs)
    data = [
        _job_read(
            job,
            [row_read(a) for a in artifacts.get(job.id, [])],
            positions.get(job.id),
            evaluation_ready=evaluated,
        )
        for job, evaluated in page
    ]
    return JobList(
        data=data,
        next_cursor=cursors.encode(jobs[-1]) if has_more and jobs else None,
        has_more=has_more,
    )


def cancel_job(
    session: Session,
    job: Job,
    *,
    settings: Settings | None = None,
    enqueuer: JobEnqueuer | None = None,
) -> Job:
    """Cancel: immediate for a queued job; a running job's worker stops within one step.
    With `settings` and `enqueuer`, a queued job's cancel wakes the tenant's next held job
    (its wake-up may have been held back by the running cap: admission)."""
    before = job.status
    job = jobs_repo.request_cancel(session, job)
    if job.status != before:
        message = "cancelled before it started" if job.status == "cancelled" else "cancel requested"
        events_repo.append_event(session, job.id, job.status, message)
        logger.info("job %s", job.status, extra={"job_id": str(job.id)})
    if before == "queued" and job.status == "cancelled" and settings and enqueuer:
        wake_admitted(session, job.tenant_id, settings, enqueuer)
    return job


def wake_admitted(
    session: Session, tenant_id: uuid.UUID, settings: Settings, enqueuer: JobEnqueuer
) -> None:
    """After commit, wake each queued job of the tenant now within its running cap (one that
    already has a wake-up gets a duplicate, which its claim ignores)."""
    for job_id in admission.admitted(session, tenant_id, settings.max_concurrent_jobs_per_tenant):
        queue = None
        if settings.gpu_classes:
            row = session.get(Job, job_id)
            queue = gpu_routing.queue_for(row.resolved if row else None, settings)
        after_commit(session, partial(_enqueue_as, enqueuer, str(job_id), None, queue))


def list_events(session: Session, job: Job, after: int, limit: int) -> EventList:
    rows = events_repo.list_events(session, job.id, after=after, limit=limit)
    return EventList(data=[event_read(e) for e in rows], last_id=rows[-1].seq if rows else after)


def event_read(event: JobEvent) -> EventRead:
    return EventRead(
        id=event.seq,
        type=event.type,
        message=event.message,
        data=event.data,
        created_at=event.created_at,
    )


def get_metrics(session: Session, job: Job) -> MetricsRead:
    curves = metrics_repo.metric_curves(session, job.id)
    return MetricsRead(
        job_id=str(job.id),
        curves={
            name: [MetricPoint(step=p["step"], value=p["value"]) for p in points]
            for name, points in curves.items()
        },
        summary=job.metrics_summary,
    )


def get_evaluation(job: Job) -> EvaluationRead:
    if job.evaluation is None:
        raise NotFound(
            f"job {job.id} has no evaluation report yet (status {job.status}"
            + (f", stage {job.stage})" if job.stage else ")"),
            code="evaluation_not_ready",
        )
    return EvaluationRead(job_id=str(job.id), report=job.evaluation)


def _notes(resolved: Any) -> list[str]:
    """The stored resolution's remarks for the client (rows from before it have none)."""
    note = resolved.get("language_note") if isinstance(resolved, dict) else None
    return [note] if isinstance(note, str) and note else []
