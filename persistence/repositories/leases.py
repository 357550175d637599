"""Lease SQL: a worker's claim, heartbeat, fenced writes and end of a job; the reaper's pass.

Postgres is the authority over who runs a job. A worker claims a job with a conditional
UPDATE that hands out a fresh lease token; every later write is fenced by that token
(`UPDATE jobs ... WHERE id = :id AND lease_token = :token`), so a worker whose lease was
taken over can change nothing. The fencing UPDATE runs first in each transaction: on
Postgres it row-locks the job, so the token cannot change until the transaction ends.
Past the fence, rows of other tables are written by their own repositories (events,
metrics, artifacts), the same functions the API and the tests use.

Functions take a Session and never commit; the caller owns the transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Result, and_, func, or_, select, update
from sqlalchemy.orm import Session

from persistence.artifact_store import StoredObject
from persistence.models import Job, utcnow
from persistence.repositories import admission
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo
from persistence.repositories import metrics as metrics_repo

logger = logging.getLogger(__name__)

RUNNING_STATUSES = ("running", "cancelling")


@dataclass(frozen=True)
class Lease:
    """Proof that this worker holds a job: present it with every write."""

    job_id: uuid.UUID
    token: uuid.UUID
    attempt: int
    worker_id: str


@dataclass(frozen=True)
class LeaseState:
    """What a heartbeat learns: the lease is still ours, and whether cancel was asked."""

    cancel_requested: bool


@dataclass(frozen=True)
class ReapedJob:
    """One job the reaper settled, and how."""

    job_id: uuid.UUID
    outcome: str  # "requeued" | "failed" | "cancelled"
    attempt: int


def claim_job(
    session: Session,
    job_id: uuid.UUID,
    worker_id: str,
    lease_seconds: int,
    running_cap: int | None = None,
) -> Lease | None:
    """Take the job if it is queued, or running under an expired lease; None if not claimable.

    A second claim while the lease is live returns None, so a duplicate delivery exits
    without touching the GPU. Each claim counts one attempt; attempts never exceed the cap.
    With `running_cap`, a queued job whose tenant already runs that many stays queued
    (persistence.repositories.admission wakes it when one of them ends).
    """
    if running_cap is not None and not admission.claim_allowed(session, job_id, running_cap):
        return None
    now = utcnow()
    token = uuid.uuid4()
    claimable = or_(
        Job.status == "queued",
        and_(Job.status == "running", Job.lease_expires_at < now),
    )
    row = _update_job(
        session,
        (Job.id == job_id, claimable, Job.attempt < Job.max_attempts),
        Job.attempt,
        status="running",
        lease_token=token,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
        worker_id=worker_id[:200],
        attempt=Job.attempt + 1,
        started_at=func.coalesce(Job.started_at, now),
        finished_at=None,
        updated_at=now,
    ).first()
    if row is None:
        return None
    lease = Lease(job_id=job_id, token=token, attempt=row[0], worker_id=worker_id)
    # The claim's UPDATE holds the row lock: the event needs no second fence. Events are
    # tenant-visible: the worker id (hostname:pid) stays in the job row, for operators only.
    events_repo.append_event(
        session, job_id, "started", f"attempt {lease.attempt}", {"attempt": lease.attempt}
    )
    return lease


def _update_job(
    session: Session, where: Sequence[ColumnElement[bool]], returning: Any, **values: Any
) -> Result[Any]:
    """One conditional UPDATE of job rows, RETURNING one column of each row it changed."""
    return session.execute(
        update(Job)
        .where(*where)
        .values(**values)
        .returning(returning)
        .execution_options(synchronize_session=False)
    )


def _held(lease: Lease) -> tuple[ColumnElement[bool], ...]:
    """The fence: the job still runs under this lease's token."""
    return (
        Job.id == lease.job_id,
        Job.lease_token == lease.token,
        Job.status.in_(RUNNING_STATUSES),
    )


def _fence(session: Session, lease: Lease, **values: Any) -> bool:
    """Touch the job under the lease (locking its row); False when the lease is gone."""
    values.setdefault("updated_at", utcnow())
    return _update_job(session, _held(lease), Job.id, **values).first() is not None


def _fenced_event(
    session: Session,
    lease: Lease,
    type_: str,
    message: str,
    data: dict[str, Any] | None,
    **values: Any,
) -> bool:
    """Set `values` on the job under the lease, then append an event; False if the lease is gone."""
    if not _fence(session, lease, **values):
        return False
    events_repo.append_event(session, lease.job_id, type_, message, data)
    return True


def renew_lease(session: Session, lease: Lease, lease_seconds: int) -> LeaseState | None:
    """Heartbeat: extend the lease; None when it was lost (expired and taken, or finished)."""
    expires = utcnow() + timedelta(seconds=lease_seconds)
    row = _update_job(
        session, _held(lease), Job.cancel_requested_at, lease_expires_at=expires
    ).first()
    if row is None:
        return None
    return LeaseState(cancel_requested=row[0] is not None)


def cancel_requested(session: Session, lease: Lease) -> bool:
    """Whether a cancel is pending: a primary-key read with no write and no row lock, cheap
    enough for the worker to ask about once a second between steps."""
    at = session.scalar(select(Job.cancel_requested_at).where(Job.id == lease.job_id))
    return at is not None


def add_event(
    session: Session,
    lease: Lease,
    type_: str,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> bool:
    """Append a job event under the lease."""
    return _fenced_event(session, lease, type_, message, data)


def set_stage(session: Session, lease: Lease, stage: str) -> bool:
    """Enter a stage: progress resets, an event records it."""
    return _fenced_event(
        session,
        lease,
        "stage",
        f"stage {stage} started",
        {"stage": stage},
        stage=stage,
        step=None,
        total_steps=None,
        percent=None,
        eta_seconds=None,
    )


def record_progress(
    session: Session,
    lease: Lease,
    *,
    step: int | None,
    total_steps: int | None,
    percent: float | None,
    eta_seconds: float | None,
) -> bool:
    """Store the current stage's progress (the caller throttles)."""
    return _fence(
        session, lease, step=step, total_steps=total_steps, percent=percent, eta_seconds=eta_seconds
    )


def record_metrics(
    session: Session, lease: Lease, rows: Sequence[tuple[int, dict[str, Any]]]
) -> bool:
    """Store training metrics by step under the lease (see metrics.record_metrics)."""
    if not rows:
        return True
    if not _fence(session, lease):
        return False
    metrics_repo.record_metrics(session, lease.job_id, rows)
    return True


def record_checkpoint(session: Session, lease: Lease, path: str, step: int) -> bool:
    """Remember where the last checkpoint is, for a resumed attempt."""
    return _fence(session, lease, checkpoint_path=path[:500], checkpoint_step=step)


def record_artifact(
    session: Session, lease: Lease, name: str, kind: str, stored: StoredObject
) -> bool:
    """Register a finished, checksummed artifact under the lease (see artifacts.add_artifact)."""
    if not _fence(session, lease):
        return False
    artifacts_repo.add_artifact(session, lease.job_id, name, kind, stored)
    return True


def record_results(
    session: Session,
    lease: Lease,
    *,
    metrics_summary: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
) -> bool:
    """Store the run's metric summary and evaluation report (either may be left as is)."""
    values: dict[str, Any] = {}
    if metrics_summary is not None:
        values["metrics_summary"] = metrics_summary
    if evaluation is not None:
        values["evaluation"] = evaluation
    return _fence(session, lease, **values)


def finish_job(
    session: Session,
    lease: Lease,
    status: str,
    *,
    error: dict[str, Any] | None = None,
    message: str = "",
) -> bool:
    """End the job (succeeded | failed | cancelled) and give up the lease."""
    if status not in ("succeeded", "failed", "cancelled"):
        raise ValueError(f"not a terminal status: {status}")
    values: dict[str, Any] = dict(
        status=status,
        error=error,
        finished_at=utcnow(),
        lease_token=None,
        lease_expires_at=None,
        eta_seconds=None,
    )
    if status == "succeeded":
        values["percent"] = 100.0
    return _fenced_event(
        session, lease, status, message, {"error": error} if error else None, **values
    )


def release_job(session: Session, lease: Lease, reason: str) -> bool:
    """Hand a running job back to the queue unfinished (worker shutting down).

    The attempt is refunded: nothing was lost. A job with a pending cancel is not released
    (False), so the cancel is never undone.
    """
    row = _update_job(
        session,
        (
            Job.id == lease.job_id,
            Job.lease_token == lease.token,
            Job.status == "running",
            Job.cancel_requested_at.is_(None),
        ),
        Job.id,
        status="queued",
        lease_token=None,
        lease_expires_at=None,
        worker_id=None,
        attempt=Job.attempt - 1,
        enqueued_at=None,
        eta_seconds=None,
        updated_at=utcnow(),
    ).first()
    if row is None:
        return False
    events_repo.append_event(session, lease.job_id, "released", reason)
    return True


def abandon_lease(session: Session, lease: Lease, reason: str) -> bool:
    """Give the lease up now (the holder is going away mid-job): the job counts as lost, and
    the reaper's next pass requeues it to resume, or fails it `worker_lost` at the cap."""
    return _fenced_event(
        session,
        lease,
        "abandoned",
        reason,
        {"attempt": lease.attempt},
        lease_expires_at=utcnow() - timedelta(seconds=1),
    )


def reap_expired(session: Session, now: datetime | None = None) -> list[ReapedJob]:
    """Jobs whose lease expired: back to queued, or failed `worker_lost` at the attempt cap.

    A job that was being cancelled when its worker vanished ends `cancelled`.
    """
    now = now or utcnow()
    expired = session.execute(
        select(Job.id, Job.status, Job.attempt, Job.max_attempts, Job.lease_token)
        .where(Job.status.in_(RUNNING_STATUSES), Job.lease_expires_at < now)
        .with_for_update(skip_locked=True)
    ).all()
    reaped: list[ReapedJob] = []
    for job_id, status, attempt, max_attempts, token in expired:
        stale = and_(Job.id == job_id, Job.lease_token == token)
        values: dict[str, Any]
        lease_gone: dict[str, Any] = dict(
            lease_token=None,
            lease_expires_at=None,
            worker_id=None,
            updated_at=now,
            eta_seconds=None,
        )
        if status == "cancelling":
            outcome, values = "cancelled", dict(status="cancelled", finished_at=now, **lease_gone)
            msg = "worker lost while cancelling; job cancelled"
            data: dict[str, Any] = {"attempt": attempt}
        elif attempt >= max_attempts:
            error: dict[str, Any] = {
                "type": "system_error",
                "code": "worker_lost",
                "message": f"the worker running this job was lost {attempt} times",
                "param": None,
            }
            outcome = "failed"
            values = {"status": "failed", "finished_at": now, "error": error, **lease_gone}
            msg, data = str(error["message"]), {"attempt": attempt, "error": error}
        else:
            outcome = "requeued"
            values = dict(status="queued", enqueued_at=None, **lease_gone)
            msg = f"lease expired on attempt {attempt}; requeued to resume from its checkpoint"
            data = {"attempt": attempt}
        if _update_job(session, (stale,), Job.id, **values).first() is None:
            continue
        # The reaper holds no lease, but the UPDATE above locked the row it now owns.
        events_repo.append_event(
            session, job_id, "lease_expired" if outcome == "requeued" else outcome, msg, data
        )
        logger.warning(
            "reaper: job %s %s (attempt %d)",
            job_id,
            outcome,
            attempt,
            extra={"job_id": str(job_id)},
        )
        reaped.append(ReapedJob(job_id=job_id, outcome=outcome, attempt=attempt))
    return reaped
