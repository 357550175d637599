"""Webhook use cases. Services flush, never commit: the request dependency owns the transaction."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from api.deps import parse_uuid
from api.errors import Conflict, InvalidRequest, NotFound
from api.webhooks.schemas import (
    AttemptRead,
    DeliveryList,
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
)
from persistence.models import Job, Tenant, WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow
from persistence.repositories import webhook_deliveries as deliveries_repo
from persistence.repositories import webhooks as webhooks_repo
from persistence.repositories.webhook_deliveries import ClaimedDelivery
from persistence.settings import Settings
from service.webhooks.addresses import non_public_literal
from service.webhooks.events import TEST_EVENT_TYPE, ping_body
from service.webhooks.sender import http_client, post_delivery
from service.webhooks.signing import new_secret

logger = logging.getLogger(__name__)

SECRET_HINT_CHARS = 10


def create_endpoint(
    session: Session, tenant: Tenant, body: WebhookCreate, settings: Settings
) -> WebhookCreated:
    limit = settings.webhook_max_endpoints_per_tenant
    if webhooks_repo.count_endpoints(session, tenant.id) >= limit:
        raise Conflict(
            f"this tenant has {limit} webhook endpoints, the most allowed; delete one first",
            code="webhook_limit_reached",
        )
    host = urlsplit(body.url).hostname or ""
    if not settings.webhooks_may_reach_private_networks and non_public_literal(host):
        raise InvalidRequest(
            f"url: {host} is not a public address; this service only sends webhooks to "
            "public hosts (CLO_WEBHOOK_ALLOW_PRIVATE_NETWORKS)",
            code="webhook_url_not_public",
            param="url",
        )
    endpoint = webhooks_repo.create_endpoint(
        session,
        tenant.id,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        secret=new_secret(),
    )
    logger.info("webhook endpoint created", extra={"tenant": tenant.name})
    return WebhookCreated(**endpoint_read(endpoint).model_dump(), secret=endpoint.secret)


def endpoint_read(endpoint: WebhookEndpoint) -> WebhookRead:
    return WebhookRead(
        id=str(endpoint.id),
        url=endpoint.url,
        event_types=list(endpoint.event_types),
        description=endpoint.description,
        secret_hint=endpoint.secret[:SECRET_HINT_CHARS] + "...",
        created_at=endpoint.created_at,
    )


def list_endpoints(session: Session, tenant: Tenant) -> WebhookList:
    return WebhookList(
        data=[endpoint_read(e) for e in webhooks_repo.list_endpoints(session, tenant.id)]
    )


def get_endpoint(session: Session, tenant: Tenant, webhook_id: str) -> WebhookEndpoint:
    """The tenant's endpoint or 404 (another tenant's looks exactly like a missing one)."""
    endpoint = webhooks_repo.get_endpoint_for_tenant(
        session, tenant.id, parse_uuid(webhook_id, "webhook")
    )
    if endpoint is None:
        raise NotFound(f"webhook {webhook_id!r} not found", code="webhook_not_found")
    return endpoint


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    webhooks_repo.delete_endpoint(session, endpoint)


def send_test(session: Session, endpoint: WebhookEndpoint, settings: Settings) -> DeliveryRead:
    """POST a signed `webhook.test` event now, once (no retries), and log it like any other."""
    delivery = deliveries_repo.add_delivery(
        session, endpoint, event_type=TEST_EVENT_TYPE, body=ping_body(endpoint, utcnow())
    )
    claimed = ClaimedDelivery(
        id=delivery.id,
        endpoint_id=endpoint.id,
        url=endpoint.url,
        secret=endpoint.secret,
        event_type=delivery.event_type,
        body=delivery.body,
        attempt=1,
    )
    with http_client(settings) as client:
        result = post_delivery(
            client, claimed, allow_private=settings.webhooks_may_reach_private_networks
        )
    deliveries_repo.record_attempt(
        session,
        delivery.id,
        status_code=result.status_code,
        error=result.error,
        duration_ms=result.duration_ms,
        next_attempt_at=None,
    )
    return _deliveries_read(session, [delivery])[0]


def endpoint_deliveries(session: Session, endpoint: WebhookEndpoint, limit: int) -> DeliveryList:
    rows = deliveries_repo.list_for_endpoint(session, endpoint.id, limit)
    return DeliveryList(data=_deliveries_read(session, rows))


def job_deliveries(session: Session, job: Job, limit: int) -> DeliveryList:
    rows = deliveries_repo.list_for_job(session, job.tenant_id, job.id, limit)
    return DeliveryList(data=_deliveries_read(session, rows))


def _deliveries_read(session: Session, rows: list[WebhookDelivery]) -> list[DeliveryRead]:
    attempts = deliveries_repo.attempts_by_delivery(session, [d.id for d in rows])
    return [_delivery_read(d, attempts.get(d.id, [])) for d in rows]


def _delivery_read(d: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryRead:
    return DeliveryRead(
        id=str(d.id),
        endpoint_id=str(d.endpoint_id),
        job_id=str(d.job_id) if d.job_id else None,
        event_type=d.event_type,
        status=d.status,  # type: ignore[arg-type]
        attempt_count=d.attempt_count,
        next_attempt_at=d.next_attempt_at,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        payload=json.loads(d.body),
        attempts=[
            AttemptRead(
                attempt=a.attempt,
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
                next_attempt_at=a.next_attempt_at,
                created_at=a.created_at,
            )
            for a in attempts
        ],
    )
