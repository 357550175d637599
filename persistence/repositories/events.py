"""Job events: per-job sequence numbers that double as SSE ids."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from persistence.models import Job, JobEvent, utcnow


def append_event(
    session: Session,
    job_id: uuid.UUID,
    type: str,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> JobEvent:
    """Add an event with the job's next seq (the one writer of event rows: API, worker, tests).

    Bumping the counter locks the job row until commit, so events of one job commit in seq
    order and a reader polling `seq > last` never skips one that commits late.
    """
    seq = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(event_seq=Job.event_seq + 1, updated_at=utcnow())
        .returning(Job.event_seq)
    ).scalar_one()
    event = JobEvent(job_id=job_id, seq=seq, type=type, message=message, data=data)
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session, job_id: uuid.UUID, after: int = 0, limit: int = 500
) -> list[JobEvent]:
    query = (
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.seq > after)
        .order_by(JobEvent.seq)
        .limit(limit)
    )
    return list(session.scalars(query))


def list_events_newest_first(
    session: Session,
    job_id: uuid.UUID,
    *,
    before: int | None = None,
    limit: int = 20,
    types: tuple[str, ...] = (),
) -> list[JobEvent]:
    """Newest first (the OpenAI-compatible listing); `before` is a seq, `types` a filter."""
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    if before is not None:
        query = query.where(JobEvent.seq < before)
    if types:
        query = query.where(JobEvent.type.in_(types))
    return list(session.scalars(query.order_by(JobEvent.seq.desc()).limit(limit)))


# Events written when a job (re)enters the queue: created, handed back, lease expired.
QUEUE_ENTRY_TYPES = ("queued", "released", "lease_expired")


def queue_entry(session: Session, job_id: uuid.UUID) -> JobEvent | None:
    """The event of the job's latest entry into the queue (its queue wait starts there)."""
    query = (
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.type.in_(QUEUE_ENTRY_TYPES))
        .order_by(JobEvent.seq.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def creating_request_id(session: Session, job_id: uuid.UUID) -> str | None:
    """The request id of the POST that created the job (its `queued` event's data)."""
    query = (
        select(JobEvent.data)
        .where(JobEvent.job_id == job_id, JobEvent.type == "queued")
        .order_by(JobEvent.seq)
        .limit(1)
    )
    data = session.execute(query).scalar_one_or_none()
    value = data.get("request_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
