"""The event stream is framed by FastAPI's own SSE support (fastapi.sse): what it adds and
what the API still decides (resume point, retry hints, end) on one wire."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import update

from persistence.db import session_scope
from persistence.models import Job
from persistence.repositories import events as events_repo


def test_stream_headers_retry_hint_and_event_fields(client, tenant, insert_job, factory) -> None:  # type: ignore[no-untyped-def]
    job_id = insert_job(tenant, status="succeeded")
    with session_scope(factory) as session:
        events_repo.append_event(session, job_id, "queued", "accepted", {"request_id": "r1"})
    response = client.get(f"/v1/jobs/{job_id}/events/stream", headers=tenant.headers)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"  # nginx must not buffer the stream
    blocks = response.text.split("\n\n")
    assert blocks[0] == "retry: 2000"  # first: the reconnect delay after a network drop
    event = dict(line.split(": ", 1) for line in blocks[1].splitlines())
    assert event["id"] == "1" and event["event"] == "queued"
    assert '"request_id": "r1"' in event["data"]
    assert blocks[2].splitlines() == ["event: end", "data: {}"]


def test_idle_stream_gets_keepalive_comments(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI's ping replaces our hand-written keep-alive: comments while nothing happens,
    so proxies keep an idle stream of a long job open."""
    import fastapi.routing

    monkeypatch.setattr(fastapi.routing, "_PING_INTERVAL", 0.2)
    job_id = insert_job(tenant, status="running", stage="training")

    def finish_later() -> None:
        time.sleep(1.2)
        with session_scope(factory) as session:
            events_repo.append_event(session, job_id, "succeeded", "done")
            session.execute(update(Job).where(Job.id == job_id).values(status="succeeded"))

    finisher = threading.Thread(target=finish_later)
    finisher.start()
    with client.stream(
        "GET", f"/v1/jobs/{job_id}/events/stream", headers=tenant.headers
    ) as response:
        text = "".join(response.iter_text())
    finisher.join()
    assert text.count(": ping\n\n") >= 2, text
    assert text.index(": ping") < text.index("event: succeeded") < text.index("event: end")


def test_stream_errors_are_json_before_the_stream_starts(client, tenant, insert_job) -> None:  # type: ignore[no-untyped-def]
    missing = client.get(
        "/v1/jobs/00000000-0000-0000-0000-000000000001/events/stream", headers=tenant.headers
    )
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert missing.json()["error"]["code"] == "job_not_found"
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/v1/jobs/{job_id}/events/stream"]["get"]["responses"]
    assert list(responses["200"]["content"]) == ["text/event-stream"]
    assert "itemSchema" in responses["200"]["content"]["text/event-stream"]
    assert all(list(responses[s]["content"]) == ["application/json"] for s in ("404", "422"))
