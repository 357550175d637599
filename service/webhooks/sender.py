"""One signed POST of a delivery, and when to try again after a failure."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx

from persistence.models import utcnow
from persistence.repositories.webhook_deliveries import ClaimedDelivery
from persistence.settings import Settings
from service.webhooks.addresses import first_non_public_address
from service.webhooks.signing import SIGNATURE_HEADER, signature_header

USER_AGENT = "clo-webhooks/1"


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None  # None: no HTTP answer (refused, timed out, TLS...)
    error: str | None  # None on a 2xx
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post_delivery(
    client: httpx.Client, delivery: ClaimedDelivery, *, allow_private: bool
) -> AttemptResult:
    """POST the stored body, signed now; redirects are not followed (a 3xx is a failure).
    Without `allow_private`, a URL whose host resolves to a non-public address is not sent."""
    if not allow_private:
        refused = _refuse_non_public(delivery.url)
        if refused is not None:
            return AttemptResult(None, refused, 0)
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature_header(delivery.secret, body),
        "CLO-Webhook-Id": str(delivery.id),  # the same on every retry: dedupe on it
        "CLO-Event-Type": delivery.event_type,
        "CLO-Delivery-Attempt": str(delivery.attempt),
    }
    started = time.monotonic()
    try:
        response = client.post(delivery.url, content=body, headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # UnicodeError: a bad host
        elapsed = int((time.monotonic() - started) * 1000)
        return AttemptResult(None, f"{type(exc).__name__}: {exc}"[:500], elapsed)
    elapsed = int((time.monotonic() - started) * 1000)
    if 200 <= response.status_code < 300:
        return AttemptResult(response.status_code, None, elapsed)
    # The receiver's own words help its owner debug; bounded, since it is stored.
    excerpt = response.text[:200].strip()
    error = f"HTTP {response.status_code}" + (f": {excerpt}" if excerpt else "")
    return AttemptResult(response.status_code, error, elapsed)


def _refuse_non_public(url: str) -> str | None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    address = first_non_public_address(host, parts.port or (443 if parts.scheme == "https" else 80))
    if address is None:
        return None
    return (
        f"refused: {host} resolves to the non-public address {address} "
        "(CLO_WEBHOOK_ALLOW_PRIVATE_NETWORKS)"
    )


def backoff_seconds(failed_attempts: int, settings: Settings) -> float:
    """Wait after the n-th failed attempt: base * 2^(n-1), capped."""
    delay = settings.webhook_backoff_seconds * 2.0 ** max(failed_attempts - 1, 0)
    return float(min(delay, settings.webhook_backoff_max_seconds))


def next_attempt_at(
    failed_attempts: int, settings: Settings, now: datetime | None = None
) -> datetime | None:
    """When to retry after `failed_attempts` failures; None once the attempts are used up."""
    if failed_attempts >= settings.webhook_max_attempts:
        return None
    return (now or utcnow()) + timedelta(seconds=backoff_seconds(failed_attempts, settings))


def http_client(settings: Settings) -> httpx.Client:
    return httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False)
