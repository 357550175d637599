"""Which job events are webhook events, and the JSON body each delivery carries."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, get_args

from persistence.models import Job, JobEvent, WebhookEndpoint
from persistence.repositories.webhooks import NewDelivery

WebhookEventType = Literal[
    "job.queued", "job.running", "job.cancelling", "job.succeeded", "job.failed", "job.cancelled"
]
WEBHOOK_EVENT_TYPES: tuple[WebhookEventType, ...] = get_args(WebhookEventType)

# job_events.type -> the webhook event type (the state the job entered). A job handed back
# by a stopping worker ("released") or by the reaper ("lease_expired") is queued again.
STATE_EVENTS: dict[str, WebhookEventType] = {
    "queued": "job.queued",
    "released": "job.queued",
    "lease_expired": "job.queued",
    "started": "job.running",
    "cancelling": "job.cancelling",
    "succeeded": "job.succeeded",
    "failed": "job.failed",
    "cancelled": "job.cancelled",
}
TEST_EVENT_TYPE = "webhook.test"


def _body(payload: dict[str, Any]) -> str:
    # Compact and stable: the stored string is the exact byte sequence that is signed.
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def delivery_for_event(endpoint: WebhookEndpoint, event: JobEvent, job: Job) -> NewDelivery | None:
    """The delivery of `event` to `endpoint`, or None when it is not a state change the
    endpoint subscribed to."""
    event_type = STATE_EVENTS.get(event.type)
    if event_type is None or event_type not in endpoint.event_types:
        return None
    status = event_type.removeprefix("job.")
    error = (event.data or {}).get("error") if status == "failed" else None
    payload = {
        "id": f"evt_{event.id}",
        "object": "event",
        "type": event_type,
        "created_at": _iso(event.created_at),
        "data": {
            "job": {
                "id": str(job.id),
                "status": status,
                "base_model": job.base_model,
                "target_language": job.target_language,
                "method": job.method,
                "error": error or (job.error if status == "failed" else None),
                "url": f"/v1/jobs/{job.id}",
            },
            "event": {"seq": event.seq, "type": event.type, "message": event.message},
        },
    }
    return NewDelivery(event_type=event_type, body=_body(payload))


def ping_body(endpoint: WebhookEndpoint, sent_at: datetime) -> str:
    """The body of POST /v1/webhooks/{id}/test: same envelope, no job."""
    return _body(
        {
            "id": f"evt_test_{int(sent_at.timestamp() * 1000)}",
            "object": "event",
            "type": TEST_EVENT_TYPE,
            "created_at": _iso(sent_at),
            "data": {"endpoint_id": str(endpoint.id), "message": "test delivery"},
        }
    )
