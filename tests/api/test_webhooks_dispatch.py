"""The dispatcher against Postgres and a real loopback receiver: job state changes (written
by the worker's own lease functions) become signed POSTs, retried with backoff up to a cap,
logged per job; and `python -m service.dispatcher` does it as its own process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from persistence.db import session_scope
from persistence.models import JobEvent, WebhookDelivery, WebhookEndpoint
from persistence.repositories import leases
from persistence.repositories import webhooks as webhooks_repo
from service.webhooks.dispatch import dispatch_once
from service.webhooks.events import delivery_for_event
from service.webhooks.sender import backoff_seconds, http_client
from service_cli.processes import start_dispatcher, stop
from tests.api.conftest import make_settings
from tests.support.api import job_body
from tests.support.webhook_receiver import Receiver, webhook_receiver


@pytest.fixture(autouse=True)
def no_endpoints_left(factory) -> Iterator[None]:  # type: ignore[no-untyped-def]
    yield
    with session_scope(factory) as session:
        session.execute(delete(WebhookEndpoint))


@pytest.fixture
def fast_settings(pg_url, data_dir):  # type: ignore[no-untyped-def]
    """Retries 50 ms apart, doubling, capped at 100 ms; three attempts at most."""
    return make_settings(
        pg_url,
        data_dir,
        webhook_backoff_seconds=0.05,
        webhook_backoff_max_seconds=0.1,
        webhook_max_attempts=3,
        webhook_timeout_seconds=2,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as r:
        yield r


def _register(client, tenant, receiver: Receiver, **body: Any) -> str:  # type: ignore[no-untyped-def]
    created = client.post(
        "/v1/webhooks", json={"url": receiver.url, **body}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    receiver.secret = created.json()["secret"]
    return str(created.json()["id"])


def _run_job_to(factory, job_id: uuid.UUID, status: str) -> None:  # type: ignore[no-untyped-def]
    """What a worker does: claim the job (started), then finish it."""
    with session_scope(factory) as session:
        lease = leases.claim_job(session, job_id, "test-worker", 60)
        assert lease is not None
    with session_scope(factory) as session:
        error = {"type": "user_error", "code": "translation_failed", "message": "x", "param": None}
        assert leases.finish_job(
            session, lease, status, error=error if status == "failed" else None
        )


def _pump(factory, settings, until, passes: int = 60) -> None:  # type: ignore[no-untyped-def]
    """Dispatcher passes until `until()` holds (bounded: a few seconds at most)."""
    with http_client(settings) as client:
        for _ in range(passes):
            dispatch_once(factory, settings, client)
            if until():
                return
            time.sleep(0.03)
    raise AssertionError("dispatcher did not get there")


def test_state_changes_are_signed_posts_in_order(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory, fast_settings, receiver
) -> None:
    _register(client, tenant, receiver)
    job_id = insert_job(tenant)
    _run_job_to(factory, job_id, "succeeded")
    _pump(factory, fast_settings, lambda: len(receiver.requests) >= 2)
    got = receiver.requests
    assert [r.payload["type"] for r in got] == ["job.running", "job.succeeded"]
    assert all(r.signature_ok and r.answered == 200 for r in got)
    done = got[1].payload
    assert done["data"]["job"]["id"] == str(job_id)
    assert done["data"]["job"]["status"] == "succeeded"
    assert done["data"]["job"]["url"] == f"/v1/jobs/{job_id}"
    # More passes send nothing again (the cursor and the (endpoint, event) key).
    with http_client(fast_settings) as http:
        for _ in range(3):
            dispatch_once(factory, fast_settings, http)
    assert len(receiver.requests) == 2


def test_failures_are_retried_with_backoff_and_logged_per_job(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory, fast_settings, receiver
) -> None:
    receiver.fail_first = 2
    _register(client, tenant, receiver, event_types=["job.failed"])
    job_id = insert_job(tenant)
    _run_job_to(factory, job_id, "failed")
    _pump(factory, fast_settings, lambda: len(receiver.requests) >= 3)
    got = receiver.requests
    assert [r.answered for r in got] == [500, 500, 200]
    assert len({r.headers["CLO-Webhook-Id"] for r in got}) == 1  # one delivery, retried
    assert [r.headers["CLO-Delivery-Attempt"] for r in got] == ["1", "2", "3"]
    assert all(r.signature_ok for r in got) and got[0].body == got[2].body
    assert got[0].payload["data"]["job"]["error"]["code"] == "translation_failed"

    log = client.get(f"/v1/jobs/{job_id}/webhook_deliveries", headers=tenant.headers).json()
    (delivery,) = log["data"]
    assert (delivery["event_type"], delivery["status"], delivery["attempt_count"]) == (
        "job.failed",
        "succeeded",
        3,
    )
    attempts = delivery["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 500, 200]
    assert attempts[0]["error"].startswith("HTTP 500")
    # Each failure scheduled its retry base * 2^(n-1) later: 50 ms, then 100 ms.
    waits = [
        (_at(a["next_attempt_at"]) - _at(a["created_at"])).total_seconds() for a in attempts[:2]
    ]
    # (The attempt row is written a few ms after its retry time was computed.)
    assert 0.0 <= 0.05 - waits[0] < 0.04 and 0.0 <= 0.1 - waits[1] < 0.04, waits
    assert attempts[2]["next_attempt_at"] is None and delivery["delivered_at"] is not None


def test_a_receiver_that_keeps_failing_is_given_up_at_the_cap(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory, fast_settings, receiver
) -> None:
    receiver.always_fail = True
    endpoint_id = _register(client, tenant, receiver, event_types=["job.cancelled"])
    job_id = insert_job(tenant)
    _run_job_to(factory, job_id, "cancelled")

    def settled() -> bool:
        log = client.get(f"/v1/webhooks/{endpoint_id}/deliveries", headers=tenant.headers)
        return bool(log.json()["data"]) and log.json()["data"][0]["status"] != "pending"

    _pump(factory, fast_settings, settled)
    (delivery,) = client.get(
        f"/v1/webhooks/{endpoint_id}/deliveries", headers=tenant.headers
    ).json()["data"]
    assert (delivery["status"], delivery["attempt_count"]) == ("failed", 3)
    assert delivery["next_attempt_at"] is None and delivery["last_status_code"] == 500
    assert len(receiver.requests) == 3


def test_backoff_doubles_up_to_its_cap(pg_url, data_dir) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        pg_url, data_dir, webhook_backoff_seconds=30, webhook_backoff_max_seconds=300
    )
    assert [backoff_seconds(n, settings) for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]


def test_only_subscribed_types_of_the_tenants_own_jobs_are_sent(  # type: ignore[no-untyped-def]
    client, make_tenant, insert_job, factory, fast_settings
) -> None:
    owner, other = make_tenant(), make_tenant()
    with webhook_receiver() as mine, webhook_receiver() as theirs:
        _register(client, owner, mine, event_types=["job.succeeded"])
        _register(client, other, theirs)
        job_id = insert_job(owner)
        _run_job_to(factory, job_id, "succeeded")
        _pump(factory, fast_settings, lambda: len(mine.requests) >= 1)
        with http_client(fast_settings) as http:
            dispatch_once(factory, fast_settings, http)
    assert [r.payload["type"] for r in mine.requests] == ["job.succeeded"]
    assert theirs.requests == []  # another tenant's endpoint never hears of this job
    other_log = client.get(f"/v1/jobs/{job_id}/webhook_deliveries", headers=other.headers)
    assert other_log.status_code == 404


def test_an_endpoint_registered_later_gets_only_later_events(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory, fast_settings, receiver
) -> None:
    job_id = insert_job(tenant)
    _run_job_to(factory, job_id, "succeeded")  # before the endpoint existed
    _register(client, tenant, receiver)
    cancelled = client.post("/v1/jobs", json=job_body(), headers=tenant.headers)
    client.post(f"/v1/jobs/{cancelled.json()['id']}/cancel", headers=tenant.headers)
    _pump(factory, fast_settings, lambda: len(receiver.requests) >= 2)
    assert [r.payload["type"] for r in receiver.requests] == ["job.queued", "job.cancelled"]
    assert {r.payload["data"]["job"]["id"] for r in receiver.requests} == {cancelled.json()["id"]}


def test_dispatcher_process_delivers(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory, pg_url, data_dir, receiver, tmp_path
) -> None:
    _register(client, tenant, receiver, event_types=["job.succeeded"])
    env = {
        "CLO_ENVIRONMENT": "development",
        "CLO_DATABASE_URL": pg_url,
        "CLO_DATA_DIR": str(data_dir),
        "CLO_DISPATCHER_INTERVAL_SECONDS": "0.1",
    }
    proc = start_dispatcher(env, tmp_path / "dispatcher.log")
    try:
        job_id = insert_job(tenant)
        _run_job_to(factory, job_id, "succeeded")
        (got,) = receiver.wait_for(1, timeout=20)
        path = f"/v1/jobs/{job_id}/webhook_deliveries"
        deadline = time.monotonic() + 10  # the process records the 200 right after it
        while time.monotonic() < deadline:
            log = client.get(path, headers=tenant.headers).json()["data"]
            if log and log[0]["status"] != "pending":
                break
            time.sleep(0.05)
    finally:
        stop(proc)
    assert got.signature_ok and got.payload["data"]["job"]["id"] == str(job_id)
    assert [(d["status"], d["attempt_count"]) for d in log] == [("succeeded", 1)]


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_the_cursor_moves_past_other_tenants_events(  # type: ignore[no-untyped-def]
    client, make_tenant, insert_job, factory, receiver
) -> None:
    """An endpoint whose tenant is quiet must not rescan everyone else's events each pass."""
    quiet, busy = make_tenant(), make_tenant()
    endpoint_id = uuid.UUID(_register(client, quiet, receiver))
    for _ in range(3):
        _run_job_to(factory, insert_job(busy), "succeeded")
    with session_scope(factory) as session:
        newest = session.scalar(select(func.max(JobEvent.id)))
        webhooks_repo.enqueue_new_events(session, delivery_for_event, settle_seconds=0.0)
    with factory() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None and endpoint.cursor_event_id == newest
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


def test_unsettled_events_are_read_again_and_delivered_once(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory, receiver
) -> None:
    """Within the settle window the cursor stays put; the unique key drops the repeats."""
    endpoint_id = uuid.UUID(_register(client, tenant, receiver))
    _run_job_to(factory, insert_job(tenant), "succeeded")
    for _ in range(3):
        with session_scope(factory) as session:
            webhooks_repo.enqueue_new_events(session, delivery_for_event, settle_seconds=3600)
    with factory() as session:
        rows = session.scalars(
            select(WebhookDelivery.event_type).where(WebhookDelivery.endpoint_id == endpoint_id)
        ).all()
    assert sorted(rows) == ["job.running", "job.succeeded"]
