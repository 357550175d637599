"""Webhook schemas: what a tenant registers and what the delivery log shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.webhooks.addresses import literal_address
from service.webhooks.events import WEBHOOK_EVENT_TYPES, WebhookEventType

MAX_URL_LENGTH = 2048


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        ..., max_length=MAX_URL_LENGTH, description="http(s) URL that receives the POSTs."
    )
    event_types: list[WebhookEventType] = Field(
        default_factory=lambda: list(WEBHOOK_EVENT_TYPES),
        min_length=1,
        max_length=len(WEBHOOK_EVENT_TYPES),
        description="Job state changes to send; default: all of them.",
    )
    description: str = Field("", max_length=200)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if any(ord(ch) < 33 or ord(ch) == 127 or ch.isspace() for ch in value):
            raise ValueError("url must not contain whitespace or control characters")
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises on a port that is not a number in range
            httpx.URL(value)  # what the sender will parse
        except (ValueError, httpx.InvalidURL) as exc:
            raise ValueError(f"url is not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError("url must start with http:// or https://")
        host = parts.hostname
        if not host:
            raise ValueError("url must name a host")
        if literal_address(host) is None:
            try:
                host.encode("idna")  # empty or over-long labels fail here, not at send time
            except UnicodeError:
                raise ValueError(f"url host {host[:60]!r} is not a valid host name") from None
        return value

    @field_validator("event_types")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("event_types must not repeat an event type")
        return value


class WebhookRead(BaseModel):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: str
    url: str
    event_types: list[str]
    description: str
    secret_hint: str = Field(description="The secret's first characters, to tell keys apart.")
    created_at: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="Signs every delivery (CLO-Signature, docs/WEBHOOKS.md). Shown only here."
    )


class WebhookList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookRead]


class AttemptRead(BaseModel):
    attempt: int
    status_code: int | None = Field(None, description="The receiver's HTTP status; None: none.")
    error: str | None = None
    duration_ms: int
    next_attempt_at: datetime | None = Field(None, description="The retry this failure set.")
    created_at: datetime


class DeliveryRead(BaseModel):
    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: str = Field(description="Sent as CLO-Webhook-Id, the same on every retry.")
    endpoint_id: str
    job_id: str | None = None
    event_type: str
    status: Literal["pending", "succeeded", "failed"] = Field(
        description="pending: waiting for (another) attempt; failed: attempts used up."
    )
    attempt_count: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    payload: dict[str, Any] = Field(description="The JSON body that was (or will be) sent.")
    attempts: list[AttemptRead]


class DeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DeliveryRead]
