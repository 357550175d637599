"""Webhook endpoints, and turning new job events into deliveries (job_events is the outbox)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from persistence.models import Job, JobEvent, WebhookDelivery, WebhookEndpoint, utcnow


def create_endpoint(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    url: str,
    event_types: Sequence[str],
    description: str,
    secret: str,
) -> WebhookEndpoint:
    """A new endpoint; it receives events from now on (its cursor starts at the newest)."""
    newest = session.scalar(select(func.max(JobEvent.id))) or 0
    endpoint = WebhookEndpoint(
        tenant_id=tenant_id,
        url=url,
        event_types=list(event_types),
        description=description,
        secret=secret,
        cursor_event_id=newest,
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def count_endpoints(session: Session, tenant_id: uuid.UUID) -> int:
    query = select(func.count()).where(WebhookEndpoint.tenant_id == tenant_id)
    return int(session.scalar(query) or 0)


def list_endpoints(session: Session, tenant_id: uuid.UUID) -> list[WebhookEndpoint]:
    query = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list(session.scalars(query))


def get_endpoint_for_tenant(
    session: Session, tenant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint | None:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    return endpoint if endpoint is not None and endpoint.tenant_id == tenant_id else None


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """Remove the endpoint; its deliveries and attempts go with it (ON DELETE CASCADE)."""
    session.delete(endpoint)
    session.flush()


@dataclass(frozen=True)
class NewDelivery:
    """What the dispatcher builds from one job event for one endpoint."""

    event_type: str
    body: str


# Builds the delivery for an event, or None when the endpoint does not want it.
DeliveryBuilder = Callable[[WebhookEndpoint, JobEvent, Job], NewDelivery | None]


def enqueue_new_events(
    session: Session, build: DeliveryBuilder, *, batch: int = 500, settle_seconds: float = 30.0
) -> int:
    """Turn the job events after each endpoint's cursor into pending deliveries.

    Event ids come from a sequence, so a transaction can commit an id lower than one already
    read: the cursor only moves past events older than `settle_seconds`, newer ones are read
    again next pass, and the (endpoint, event) unique key drops the repeats. Endpoints are
    locked with SKIP LOCKED, so concurrent dispatchers split them rather than double up.
    Returns the number of deliveries created.
    """
    endpoints = session.scalars(
        select(WebhookEndpoint).order_by(WebhookEndpoint.id).with_for_update(skip_locked=True)
    ).all()
    settled_before = utcnow() - timedelta(seconds=settle_seconds)
    horizon = _settled_horizon(session, endpoints, settled_before)
    created = 0
    for endpoint in endpoints:
        rows = session.execute(
            select(JobEvent, Job)
            .join(Job, Job.id == JobEvent.job_id)
            .where(JobEvent.id > endpoint.cursor_event_id, Job.tenant_id == endpoint.tenant_id)
            .order_by(JobEvent.id)
            .limit(batch)
        ).all()
        for event, job in rows:
            new = build(endpoint, event, job)
            if new is not None:
                created += _insert_delivery(session, endpoint, event, new)
        events = [(e.id, e.created_at) for e, _ in rows]
        cursor = _settled_cursor(endpoint.cursor_event_id, events, settled_before)
        if len(rows) < batch:
            # Every event of this tenant after the cursor was read: skip other tenants'
            # settled events too, so the next scan starts near the newest event.
            unsettled = [i for i, created_at in events if created_at >= settled_before]
            cursor = max(cursor, min([horizon, *(i - 1 for i in unsettled[:1])]))
        endpoint.cursor_event_id = cursor
    session.flush()
    return created


def _settled_cursor(
    cursor: int, events: Sequence[tuple[int, datetime]], settled_before: datetime
) -> int:
    """The last id of the leading run of events older than `settled_before`."""
    for event_id, created_at in events:
        if created_at >= settled_before:
            break
        cursor = event_id
    return cursor


def _settled_horizon(
    session: Session, endpoints: Sequence[WebhookEndpoint], settled_before: datetime
) -> int:
    """The newest event id older than `settled_before`, any tenant's (0: none); read over
    the ids after the lowest cursor only, which the cursors keep recent."""
    if not endpoints:
        return 0
    lowest = min(e.cursor_event_id for e in endpoints)
    query = select(func.max(JobEvent.id)).where(
        JobEvent.id > lowest, JobEvent.created_at < settled_before
    )
    return int(session.scalar(query) or 0)


def _insert_delivery(
    session: Session, endpoint: WebhookEndpoint, event: JobEvent, new: NewDelivery
) -> int:
    values = dict(
        id=uuid.uuid4(),
        endpoint_id=endpoint.id,
        tenant_id=endpoint.tenant_id,
        job_id=event.job_id,
        event_id=event.id,
        event_type=new.event_type,
        body=new.body,
        status="pending",
        attempt_count=0,
        next_attempt_at=utcnow(),
        created_at=utcnow(),
    )
    if session.get_bind().dialect.name == "postgresql":
        inserted = session.execute(
            pg_insert(WebhookDelivery)
            .values(**values)
            .on_conflict_do_nothing(constraint="uq_webhook_deliveries_endpoint_event")
            .returning(WebhookDelivery.id)
        ).first()
        return 0 if inserted is None else 1
    # SQLite (the embedded default, one dispatcher): look before inserting.
    exists = session.scalar(
        select(WebhookDelivery.id).where(
            WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.event_id == event.id
        )
    )
    if exists is not None:
        return 0
    session.add(WebhookDelivery(**values))
    return 1
