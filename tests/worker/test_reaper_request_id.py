"""A wake-up the reaper re-sends (python -m worker.reaper, a real process, real Redis) carries
the creating request's id in its header, as the API's did."""

from __future__ import annotations

import json
import random
import uuid
from datetime import timedelta
from pathlib import Path

import redis

from persistence.db import session_scope
from persistence.models import utcnow
from persistence.repositories import events as events_repo
from persistence.wakeup import REQUEST_ID_HEADER
from tests.worker.test_reaper_process import _run_reaper


def test_resent_wakeup_keeps_the_request_id(factory, make_job, pg_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lost = make_job(created_at=utcnow() - timedelta(minutes=30), enqueued_at=None)
    with session_scope(factory) as session:
        events_repo.append_event(session, lost, "queued", "accepted", {"request_id": "req-lost"})
    queue = f"reaper-rid-{uuid.uuid4().hex[:8]}"
    redis_url = f"redis://127.0.0.1:6379/{random.randint(1, 15)}"
    client = redis.Redis.from_url(redis_url)
    try:
        _run_reaper(pg_url, redis_url, queue, tmp_path)
        messages = [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    finally:
        client.delete(queue)
    resent = [m for m in messages if str(lost) in m["headers"]["argsrepr"]]
    assert len(resent) == 1
    assert resent[0]["headers"][REQUEST_ID_HEADER] == "req-lost"
