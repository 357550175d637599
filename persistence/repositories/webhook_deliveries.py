"""Webhook deliveries: claiming the due ones, recording each attempt, the delivery log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from persistence.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow


@dataclass(frozen=True)
class ClaimedDelivery:
    """What a sender needs, detached from the session (the HTTP call runs outside it)."""

    id: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    secret: str
    event_type: str
    body: str
    attempt: int  # the number of the attempt about to be made (1-based)


def claim_due(session: Session, *, limit: int, claim_seconds: float) -> list[ClaimedDelivery]:
    """Pending deliveries whose time has come, pushed `claim_seconds` ahead so that no other
    dispatcher picks them while this one's POSTs run (outside any transaction). A dispatcher
    that dies mid-send leaves them due again once the claim runs out."""
    now = utcnow()
    rows = session.execute(
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        # Oldest first; event ids break ties so one pass sends a job's events in order.
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.event_id)
        .limit(limit)
        .with_for_update(of=WebhookDelivery, skip_locked=True)
    ).all()
    claimed = []
    for delivery, endpoint in rows:
        delivery.next_attempt_at = now + timedelta(seconds=claim_seconds)
        claimed.append(
            ClaimedDelivery(
                id=delivery.id,
                endpoint_id=endpoint.id,
                url=endpoint.url,
                secret=endpoint.secret,
                event_type=delivery.event_type,
                body=delivery.body,
                attempt=delivery.attempt_count + 1,
            )
        )
    session.flush()
    return claimed


def add_delivery(
    session: Session,
    endpoint: WebhookEndpoint,
    *,
    event_type: str,
    body: str,
    job_id: uuid.UUID | None = None,
) -> WebhookDelivery:
    """A delivery not made from a job event (the test endpoint's)."""
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id,
        tenant_id=endpoint.tenant_id,
        job_id=job_id,
        event_type=event_type,
        body=body,
        status="pending",
        next_attempt_at=None,
    )
    session.add(delivery)
    session.flush()
    return delivery


def record_attempt(
    session: Session,
    delivery_id: uuid.UUID,
    *,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    next_attempt_at: datetime | None,
) -> WebhookDelivery | None:
    """Log one POST; a 2xx settles the delivery, else it waits for `next_attempt_at` or, with
    None, has failed for good. None when the delivery is gone (endpoint deleted meanwhile)."""
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None:
        return None
    delivery.attempt_count += 1
    succeeded = status_code is not None and 200 <= status_code < 300
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempt=delivery.attempt_count,
            status_code=status_code,
            error=error[:500] if error else None,
            duration_ms=duration_ms,
            next_attempt_at=None if succeeded else next_attempt_at,
        )
    )
    delivery.last_status_code = status_code
    delivery.last_error = error[:500] if error else None
    if succeeded:
        delivery.status, delivery.next_attempt_at, delivery.delivered_at = (
            "succeeded",
            None,
            utcnow(),
        )
    elif next_attempt_at is None:
        delivery.status, delivery.next_attempt_at = "failed", None
    else:
        delivery.next_attempt_at = next_attempt_at
    session.flush()
    return delivery


def attempts_by_delivery(
    session: Session, delivery_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[WebhookAttempt]]:
    found: dict[uuid.UUID, list[WebhookAttempt]] = {}
    if delivery_ids:
        query = (
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(delivery_ids))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt)
        )
        for attempt in session.scalars(query):
            found.setdefault(attempt.delivery_id, []).append(attempt)
    return found


def list_for_job(
    session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID, limit: int
) -> list[WebhookDelivery]:
    """The job's deliveries to every endpoint of the tenant, newest first."""
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def list_for_endpoint(
    session: Session, endpoint_id: uuid.UUID, limit: int
) -> list[WebhookDelivery]:
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
    )
    return list(session.scalars(query))
