"""Webhook endpoints: handlers resolve dependencies and call one service function."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import CurrentJob, CurrentTenant, SessionDep, SettingsDep
from api.errors import COMMON_ERRORS
from api.webhooks import service
from api.webhooks.schemas import (
    DeliveryList,
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=COMMON_ERRORS)
job_deliveries_router = APIRouter(prefix="/v1/jobs", tags=["webhooks"], responses=COMMON_ERRORS)

Limit = Annotated[int, Query(ge=1, le=100, description="Newest first, at most this many.")]


@router.post("", status_code=201, response_model=WebhookCreated)
def create_webhook(
    body: WebhookCreate, session: SessionDep, tenant: CurrentTenant, settings: SettingsDep
) -> WebhookCreated:
    """Register a URL for job state changes; the response's `secret` is shown only once."""
    return service.create_endpoint(session, tenant, body, settings)


@router.get("", response_model=WebhookList)
def list_webhooks(session: SessionDep, tenant: CurrentTenant) -> WebhookList:
    return service.list_endpoints(session, tenant)


@router.get("/{webhook_id}", response_model=WebhookRead)
def get_webhook(webhook_id: str, session: SessionDep, tenant: CurrentTenant) -> WebhookRead:
    return service.endpoint_read(service.get_endpoint(session, tenant, webhook_id))


@router.delete("/{webhook_id}", status_code=204, response_class=Response)
def delete_webhook(webhook_id: str, session: SessionDep, tenant: CurrentTenant) -> Response:
    """Stop sending; the endpoint's delivery log goes with it."""
    service.delete_endpoint(session, service.get_endpoint(session, tenant, webhook_id))
    return Response(status_code=204)


@router.post("/{webhook_id}/test", response_model=DeliveryRead)
def test_webhook(
    webhook_id: str, session: SessionDep, tenant: CurrentTenant, settings: SettingsDep
) -> DeliveryRead:
    """Send a signed `webhook.test` event now (one attempt, no retries); the answer is the
    logged delivery with the receiver's status code or the connection error."""
    endpoint = service.get_endpoint(session, tenant, webhook_id)
    return service.send_test(session, endpoint, settings)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList)
def list_webhook_deliveries(
    webhook_id: str, session: SessionDep, tenant: CurrentTenant, limit: Limit = 50
) -> DeliveryList:
    endpoint = service.get_endpoint(session, tenant, webhook_id)
    return service.endpoint_deliveries(session, endpoint, limit)


@job_deliveries_router.get("/{job_id}/webhook_deliveries", response_model=DeliveryList)
def list_job_webhook_deliveries(
    session: SessionDep, job: CurrentJob, limit: Limit = 50
) -> DeliveryList:
    """Every delivery of this job's state changes, to each of the tenant's endpoints."""
    return service.job_deliveries(session, job, limit)
