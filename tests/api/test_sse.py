"""SSE event stream: `id:` is the event seq, Last-Event-ID resumes, the stream ends at terminal."""

from __future__ import annotations

import json
import threading
import time

from sqlalchemy import update

from persistence.db import session_scope
from persistence.models import Job
from persistence.repositories import events as events_repo


def _parse(text: str) -> list[dict[str, str]]:
    frames = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":"
        )
        if "event" in fields:
            frames.append(fields)
    return frames


def test_stream_resumes_after_last_event_id_and_follows_live_events(
    client,
    tenant,
    insert_job,
    factory,  # type: ignore[no-untyped-def]
) -> None:
    job_id = insert_job(tenant, status="running", stage="training")
    with session_scope(factory) as session:
        for i in range(1, 4):
            events_repo.append_event(session, job_id, "progress", f"step {i}", {"step": i})

    def finish_later() -> None:
        time.sleep(0.3)
        with session_scope(factory) as session:
            events_repo.append_event(session, job_id, "succeeded", "done")
            session.execute(update(Job).where(Job.id == job_id).values(status="succeeded"))

    worker = threading.Thread(target=finish_later)
    worker.start()
    started = time.monotonic()
    with client.stream(
        "GET",
        f"/v1/jobs/{job_id}/events/stream",
        headers={**tenant.headers, "Last-Event-ID": "2"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    worker.join()
    frames = _parse(text)
    assert [f["id"] for f in frames if "id" in f] == ["3", "4"]
    assert [f["event"] for f in frames] == ["progress", "succeeded", "end"]
    assert json.loads(frames[0]["data"])["data"] == {"step": 3}
    assert time.monotonic() - started < 5  # ended by the terminal status, not a timeout


def test_stream_of_finished_job_replays_and_ends(client, tenant, insert_job, factory) -> None:  # type: ignore[no-untyped-def]
    job_id = insert_job(tenant, status="cancelled")
    with session_scope(factory) as session:
        events_repo.append_event(session, job_id, "queued", "accepted")
        events_repo.append_event(session, job_id, "cancelled", "cancelled")
    response = client.get(f"/v1/jobs/{job_id}/events/stream", headers=tenant.headers)
    frames = _parse(response.text)
    assert [(f.get("id"), f["event"]) for f in frames] == [
        ("1", "queued"),
        ("2", "cancelled"),
        (None, "end"),
    ]
    resumed = client.get(
        f"/v1/jobs/{job_id}/events/stream", params={"after": 2}, headers=tenant.headers
    )
    assert [f["event"] for f in _parse(resumed.text)] == ["end"]
