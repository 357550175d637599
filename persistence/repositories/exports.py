"""Job export rows: created by the API (one per job and options), claimed and finished by a
worker under a lease, the same way a job is (see repositories.leases).

A claim is a conditional UPDATE that hands out a fresh lease token; every later write is
fenced by it (`WHERE id = :id AND lease_token = :token AND status = 'running'`), so a worker
that lost its lease (expired and claimed again) changes nothing. Functions never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from persistence.models import JobExport, utcnow


@dataclass(frozen=True)
class ExportLease:
    """Proof that this worker runs the export: present it with every write."""

    export_id: uuid.UUID
    job_id: uuid.UUID
    token: uuid.UUID
    attempt: int


def find_by_request(session: Session, job_id: uuid.UUID, request_hash: str) -> JobExport | None:
    query = select(JobExport).where(
        JobExport.job_id == job_id, JobExport.request_hash == request_hash
    )
    return session.scalars(query).one_or_none()


def create_export(
    session: Session,
    job_id: uuid.UUID,
    *,
    format: str,
    options: dict[str, Any],
    request_hash: str,
    artifact_name: str,
) -> JobExport:
    row = JobExport(
        job_id=job_id,
        format=format,
        options=options,
        request_hash=request_hash,
        artifact_name=artifact_name,
        status="queued",
    )
    session.add(row)
    session.flush()
    return row


def requeue(session: Session, row: JobExport) -> None:
    """Run a failed export (or one whose artifact was deleted) again, under the same id."""
    row.status, row.error, row.report = "queued", None, None
    row.attempt, row.lease_token, row.lease_expires_at = 0, None, None
    row.started_at = row.finished_at = None
    row.updated_at = utcnow()
    session.flush()


def list_exports(session: Session, job_id: uuid.UUID) -> list[JobExport]:
    query = (
        select(JobExport)
        .where(JobExport.job_id == job_id)
        .order_by(JobExport.created_at.desc(), JobExport.id)
    )
    return list(session.scalars(query))


def get_export(session: Session, job_id: uuid.UUID, export_id: uuid.UUID) -> JobExport | None:
    query = select(JobExport).where(JobExport.job_id == job_id, JobExport.id == export_id)
    return session.scalars(query).one_or_none()


def mark_enqueued(session: Session, export_id: uuid.UUID) -> None:
    session.execute(update(JobExport).where(JobExport.id == export_id).values(enqueued_at=utcnow()))


def is_stalled(row: JobExport) -> bool:
    """Queued, or running under a lease that ran out: its wake-up may be lost."""
    if row.status == "queued":
        return True
    expires = row.lease_expires_at
    return row.status == "running" and expires is not None and expires < utcnow()


def stalled_exports(
    session: Session, older_than_seconds: float, limit: int = 100
) -> list[uuid.UUID]:
    """Exports whose wake-up may be lost (the reaper re-sends it): queued, or running under a
    lease that ran out, with no wake-up sent for `older_than_seconds`."""
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than_seconds)
    rows = session.execute(
        select(JobExport.id)
        .where(
            or_(
                JobExport.status == "queued",
                and_(JobExport.status == "running", JobExport.lease_expires_at < now),
            ),
            or_(JobExport.enqueued_at.is_(None), JobExport.enqueued_at < cutoff),
            JobExport.created_at < cutoff,
        )
        .order_by(JobExport.created_at)
        .limit(limit)
    ).scalars()
    return list(rows)


def claim_export(
    session: Session, export_id: uuid.UUID, worker_id: str, lease_seconds: int
) -> ExportLease | None:
    """Take the export if it is queued, or running under an expired lease, below the attempt
    cap; None if not claimable (finished, held, or gone). An expired one at the cap fails."""
    now = utcnow()
    token = uuid.uuid4()
    claimable = or_(
        JobExport.status == "queued",
        and_(JobExport.status == "running", JobExport.lease_expires_at < now),
    )
    row = session.execute(
        update(JobExport)
        .where(JobExport.id == export_id, claimable, JobExport.attempt < JobExport.max_attempts)
        .values(
            status="running",
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            worker_id=worker_id[:200],
            attempt=JobExport.attempt + 1,
            started_at=func.coalesce(JobExport.started_at, now),
            updated_at=now,
        )
        .returning(JobExport.job_id, JobExport.attempt)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        _fail_at_cap(session, export_id, now)
        return None
    return ExportLease(export_id=export_id, job_id=row[0], token=token, attempt=row[1])


def _fail_at_cap(session: Session, export_id: uuid.UUID, now: Any) -> None:
    """An export whose last allowed attempt died (its lease ran out) ends failed."""
    session.execute(
        update(JobExport)
        .where(
            JobExport.id == export_id,
            JobExport.status == "running",
            JobExport.lease_expires_at < now,
            JobExport.attempt >= JobExport.max_attempts,
        )
        .values(
            status="failed",
            lease_token=None,
            finished_at=now,
            updated_at=now,
            error={
                "type": "system_error",
                "code": "worker_lost",
                "message": "the worker running this export stopped on every attempt",
                "param": None,
            },
        )
        .execution_options(synchronize_session=False)
    )


def _fenced(session: Session, lease: ExportLease, **values: Any) -> bool:
    values.setdefault("updated_at", utcnow())
    row = session.execute(
        update(JobExport)
        .where(
            JobExport.id == lease.export_id,
            JobExport.lease_token == lease.token,
            JobExport.status == "running",
        )
        .values(**values)
        .returning(JobExport.id)
        .execution_options(synchronize_session=False)
    ).first()
    return row is not None


def renew_export(session: Session, lease: ExportLease, lease_seconds: int) -> bool:
    """Heartbeat: extend the lease; False when it was lost."""
    return _fenced(session, lease, lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))


def finish_export(
    session: Session,
    lease: ExportLease,
    status: str,
    *,
    report: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """End the export (succeeded | failed) and give up the lease; False if it was lost."""
    if status not in ("succeeded", "failed"):
        raise ValueError(f"an export finishes succeeded or failed, not {status!r}")
    now = utcnow()
    return _fenced(
        session,
        lease,
        status=status,
        report=report,
        error=error,
        lease_token=None,
        lease_expires_at=None,
        finished_at=now,
    )
