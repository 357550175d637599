"""Job rows as the API sees them: create, read, list, cancel. Lease SQL lives with the worker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from persistence.models import ACTIVE_STATUSES, Job, utcnow


@dataclass(frozen=True)
class JobFilters:
    status: str | None = None
    target_language: str | None = None
    base_model: str | None = None


def create_job(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    spec: dict[str, Any],
    max_attempts: int,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> Job:
    job = Job(
        tenant_id=tenant_id,
        status="queued",
        spec=spec,
        base_model=spec["base_model"],
        target_language=spec["target_language"],
        method=spec.get("method", "clo"),
        data_size=spec["data_size"],
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: uuid.UUID) -> Job | None:
    return session.get(Job, job_id)


def get_job_for_tenant(session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
    """The job if it belongs to the tenant; another tenant's job is indistinguishable from none."""
    query = select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id)
    return session.scalars(query).one_or_none()


def get_job_by_idempotency_key(session: Session, tenant_id: uuid.UUID, key: str) -> Job | None:
    query = select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key)
    return session.scalars(query).one_or_none()


def list_jobs(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    filters: JobFilters,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[Job]:
    """Newest first; `before` is the (created_at, id) of the last row of the previous page."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if filters.status:
        query = query.where(Job.status == filters.status)
    if filters.target_language:
        query = query.where(Job.target_language == filters.target_language)
    if filters.base_model:
        query = query.where(Job.base_model == filters.base_model)
    if before is not None:
        created, job_id = before
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    return list(session.scalars(query))


def count_active_jobs(session: Session, tenant_id: uuid.UUID) -> int:
    query = select(func.count()).where(
        Job.tenant_id == tenant_id, Job.status.in_(sorted(ACTIVE_STATUSES))
    )
    return int(session.scalar(query) or 0)


def queue_position(session: Session, job: Job) -> int:
    """1 for the next queued job to run (over all tenants: the GPU queue is shared)."""
    ahead = select(func.count()).where(
        Job.status == "queued",
        or_(
            Job.created_at < job.created_at,
            and_(Job.created_at == job.created_at, Job.id < job.id),
        ),
    )
    return int(session.scalar(ahead) or 0) + 1


def request_cancel(session: Session, job: Job) -> Job:
    """queued -> cancelled now; running -> cancelling (the worker stops and finishes it).

    Conditional UPDATEs, so a worker claiming the job at the same moment cannot be overwritten.
    """
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == "queued")
        .values(status="cancelled", cancel_requested_at=now, finished_at=now, updated_at=now)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == "running")
            .values(status="cancelling", cancel_requested_at=now, updated_at=now)
        )
    session.flush()
    session.refresh(job)
    return job


def mark_enqueued(session: Session, job_id: uuid.UUID) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=utcnow()))
