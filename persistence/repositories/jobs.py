"""Job rows: create, read, list, cancel, wake-up bookkeeping. The worker's lease SQL is in
leases.py."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    FromClause,
    Row,
    ScalarSelect,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    or_,
    select,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session, defer

from persistence.keys import hash_key
from persistence.models import ACTIVE_STATUSES, ApiKey, Artifact, Job, Tenant, utcnow


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
    resolved: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> Job:
    job = Job(
        tenant_id=tenant_id,
        status="queued",
        spec=spec,
        resolved=resolved,
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


def has_evaluation(column: Any) -> Any:
    """SQL for "this evaluation column holds a report"."""
    # A JSON column can hold SQL NULL or a JSON null; the ORM reads both as None.
    return type_coerce(func.coalesce(cast(column, Text) != "null", False), Boolean)


def list_jobs(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    filters: JobFilters,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[tuple[Job, bool]]:
    """(job, has an evaluation) newest first; `before` is the (created_at, id) of the last
    row of the previous page.

    The evaluation report is not loaded (it can be large and a list does not show it).
    """
    query = (
        select(Job, has_evaluation(Job.evaluation))
        .options(defer(Job.evaluation))
        .where(Job.tenant_id == tenant_id)
    )
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
    return [(job, bool(has_evaluation)) for job, has_evaluation in session.execute(query)]


def count_active_jobs(session: Session, tenant_id: uuid.UUID) -> int:
    query = select(func.count()).where(
        Job.tenant_id == tenant_id, Job.status.in_(sorted(ACTIVE_STATUSES))
    )
    return int(session.scalar(query) or 0)


def queue_positions(session: Session, jobs: Sequence[Job]) -> dict[uuid.UUID, int]:
    """Queue position of every queued job in `jobs`, in one statement: 1 for the next to run
    (over all tenants: the GPU queue is shared)."""
    queued = [job.id for job in jobs if job.status == "queued"]
    if not queued:
        return {}
    rows = session.execute(_queue_positions_query(), {"ids": queued})
    return {job_id: int(n) + 1 for job_id, n in rows}


@lru_cache(maxsize=1)
def _queue_positions_query() -> Any:
    # Built once: composing the aliased correlated count costs more CPU than running it.
    jobs = Job.__table__
    return select(jobs.c.id, _queued_ahead(jobs)).where(
        jobs.c.id.in_(bindparam("ids", expanding=True))
    )


def _queued_ahead(jobs: FromClause) -> ScalarSelect[int]:
    """Count of queued jobs created before the row of `jobs` (ties broken by id)."""
    # A row comparison, so the (created_at, id) index of queued jobs answers it alone.
    ahead = jobs.alias("ahead")
    return (
        select(func.count())
        .select_from(ahead)
        .where(
            ahead.c.status == "queued",
            tuple_(ahead.c.created_at, ahead.c.id) < tuple_(jobs.c.created_at, jobs.c.id),
        )
        .scalar_subquery()
    )


@dataclass(frozen=True)
class KeyedJobRead:
    """What GET /v1/jobs/{id} shows, found through the caller's API key."""

    tenant_id: uuid.UUID
    tenant_name: str
    # The job's columns plus queue_position and evaluation_ready; None: the tenant has no
    # such job (another tenant's job included).
    job: Row[Any] | None
    # Rows with artifact_name, artifact_kind, artifact_size, artifact_sha256,
    # artifact_created_at, by name.
    artifacts: list[Row[Any]]


def _read_for_key_query() -> Any:
    """Key -> tenant, the tenant's job, its queue position and artifacts: one statement."""
    jobs, artifacts = Job.__table__, Artifact.__table__
    evaluation_ready = has_evaluation(jobs.c.evaluation)
    job_columns = [c for c in jobs.c if c.name not in _NOT_SHOWN]
    return (
        select(
            ApiKey.tenant_id,
            Tenant.name.label("tenant_name"),
            *job_columns,
            case((jobs.c.status == "queued", _queued_ahead(jobs) + 1)).label("queue_position"),
            evaluation_ready.label("evaluation_ready"),
            *[c.label(f"artifact_{c.name}") for c in artifacts.c if c.name in _ARTIFACT_SHOWN],
        )
        .select_from(ApiKey)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .outerjoin(
            jobs,
            and_(
                jobs.c.tenant_id == ApiKey.tenant_id,
                jobs.c.id == bindparam("job_id", type_=jobs.c.id.type),
            ),
        )
        .outerjoin(artifacts, artifacts.c.job_id == jobs.c.id)
        .where(
            ApiKey.key_hash == bindparam("key_hash", type_=ApiKey.key_hash.type),
            ApiKey.revoked_at.is_(None),
        )
        .order_by(artifacts.c.name)
    )


# Worker-side state and documents the status read does not return (evaluation can be large).
_NOT_SHOWN = frozenset(
    {
        "tenant_id",
        "lease_token",
        "lease_expires_at",
        "worker_id",
        "checkpoint_path",
        "checkpoint_step",
        "evaluation",
        "idempotency_key",
        "request_hash",
        "event_seq",
        "enqueued_at",
    }
)
_ARTIFACT_SHOWN = frozenset({"name", "kind", "size", "sha256", "created_at"})
_READ_FOR_KEY = _read_for_key_query()


def read_job_for_key(conn: Connection, secret: str, job_id: uuid.UUID) -> KeyedJobRead | None:
    """The job as its tenant sees it, authorised by an API key; None when the key is unknown
    or revoked. One round trip: the key is checked by the same statement that reads the job,
    so a revoked key stops working at once."""
    rows = conn.execute(_READ_FOR_KEY, {"key_hash": hash_key(secret), "job_id": job_id}).all()
    if not rows:
        return None
    first = rows[0]
    return KeyedJobRead(
        tenant_id=first.tenant_id,
        tenant_name=first.tenant_name,
        job=first if first.id is not None else None,
        artifacts=[row for row in rows if row.artifact_name is not None],
    )


def request_cancel(session: Session, job: Job) -> Job:
    """queued -> cancelled now; running -> cancelling (the worker stops and finishes it).

    Conditional UPDATEs, so a worker claiming the job at the same moment cannot be overwritten.
    """
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == "queued")
        .values(status="cancelled", cancel_requested_at=now, finished_at=now, updated_at=now)
        .returning(Job.id)
    ).first()
    if done is None:
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == "running")
            .values(status="cancelling", cancel_requested_at=now, updated_at=now)
        )
    session.flush()
    session.refresh(job)
    return job


def queued_without_message(
    session: Session, older_than_seconds: float, limit: int = 100
) -> list[uuid.UUID]:
    """Queued jobs never enqueued, or enqueued long ago: their wake-up may be lost."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    rows = session.execute(
        select(Job.id)
        .where(
            Job.status == "queued",
            or_(Job.enqueued_at.is_(None), Job.enqueued_at < cutoff),
            Job.created_at < cutoff,
        )
        .order_by(Job.created_at)
        .limit(limit)
    ).scalars()
    return list(rows)


def mark_enqueued(session: Session, job_ids: Sequence[uuid.UUID]) -> None:
    """Record that a wake-up message was just sent for these jobs (the API after a commit, the
    reaper after a re-send); a job no longer queued keeps its row as it is."""
    if job_ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == "queued")
            .values(enqueued_at=utcnow())
            .execution_options(synchronize_session=False)
        )
