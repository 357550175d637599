"""A dispatcher pass: new job events become deliveries, due deliveries are POSTed.

job_events is the outbox: nothing on the job's write path knows about webhooks, and the
per-endpoint cursor plus the (endpoint, event) unique key make every pass idempotent.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.repositories import webhook_deliveries as deliveries_repo
from persistence.repositories import webhooks as webhooks_repo
from persistence.repositories.webhook_deliveries import ClaimedDelivery
from persistence.settings import Settings
from service.webhooks.events import delivery_for_event
from service.webhooks.sender import AttemptResult, next_attempt_at, post_delivery

logger = logging.getLogger(__name__)

BATCH = 50
SENDERS = 8  # endpoints sent to at once, so one slow receiver does not hold up the others
# The cursor moves past an event only this long after it was written (see enqueue_new_events).
SETTLE_SECONDS = 30.0


@dataclass(frozen=True)
class DispatchReport:
    created: int
    succeeded: int
    retrying: int
    gave_up: int


def dispatch_once(
    factory: sessionmaker[Session], settings: Settings, client: httpx.Client
) -> DispatchReport:
    """One pass: enqueue new events, then send what is due (each result in its own commit)."""
    with session_scope(factory) as session:
        created = webhooks_repo.enqueue_new_events(
            session, delivery_for_event, settle_seconds=SETTLE_SECONDS
        )
    # A claim outlasts every attempt of the batch, so no other dispatcher sends them twice.
    claim = settings.webhook_timeout_seconds * BATCH + 30
    with session_scope(factory) as session:
        claimed = deliveries_repo.claim_due(session, limit=BATCH, claim_seconds=claim)
    outcomes = {"succeeded": 0, "retrying": 0, "gave_up": 0}
    # One endpoint's deliveries go one after another, in claim order (a job's events in
    # order); different endpoints are sent to in parallel.
    by_endpoint: dict[uuid.UUID, list[ClaimedDelivery]] = {}
    for delivery in claimed:
        by_endpoint.setdefault(delivery.endpoint_id, []).append(delivery)
    allow = settings.webhooks_may_reach_private_networks

    def send_all(queue: list[ClaimedDelivery]) -> list[str]:
        return [
            _record(factory, settings, d, post_delivery(client, d, allow_private=allow))
            for d in queue
        ]

    if by_endpoint:
        with ThreadPoolExecutor(max_workers=min(SENDERS, len(by_endpoint))) as pool:
            for results in pool.map(send_all, by_endpoint.values()):
                for outcome in results:
                    outcomes[outcome] += 1
    report = DispatchReport(
        created, outcomes["succeeded"], outcomes["retrying"], outcomes["gave_up"]
    )
    if created or claimed:
        logger.info("webhooks: %s", report)
    return report


def _record(
    factory: sessionmaker[Session],
    settings: Settings,
    delivery: ClaimedDelivery,
    result: AttemptResult,
) -> str:
    retry_at = None if result.ok else next_attempt_at(delivery.attempt, settings)
    with session_scope(factory) as session:
        deliveries_repo.record_attempt(
            session,
            delivery.id,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            next_attempt_at=retry_at,
        )
    if result.ok:
        return "succeeded"
    if retry_at is None:
        logger.warning(
            "webhook delivery %s failed after %d attempts: %s",
            delivery.id,
            delivery.attempt,
            result.error,
        )
        return "gave_up"
    return "retrying"
