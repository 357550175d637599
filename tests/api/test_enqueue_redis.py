"""The real Celery path: a committed job's wake-up message lands in Redis's `gpu` queue."""

from __future__ import annotations

import base64
import json

import redis
from fastapi.testclient import TestClient

from api.app import create_app
from api.enqueue import GPU_QUEUE, RUN_JOB_TASK, celery_send
from tests.api.conftest import REDIS_URL, job_body, make_settings


def _take_message(client: redis.Redis, job_id: str) -> dict | None:  # type: ignore[type-arg]
    """Find (and remove) the queued message for this job; other tests may share the queue."""
    for raw in client.lrange(GPU_QUEUE, 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        if args == [job_id]:
            client.lrem(GPU_QUEUE, 1, raw)
            return message
    return None


def test_post_job_sends_clo_run_job_to_redis_after_commit(
    pg_url, tmp_path, make_tenant, load_job
) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(pg_url, tmp_path), enqueue=celery_send(REDIS_URL))
    tenant = make_tenant()
    with TestClient(app) as c:
        response = c.post("/v1/jobs", json=job_body(), headers=tenant.headers)
    assert response.status_code == 201
    job_id = response.json()["id"]
    message = _take_message(redis.Redis.from_url(REDIS_URL), job_id)
    assert message is not None, "no clo.run_job message for the job in the gpu queue"
    assert message["headers"]["task"] == RUN_JOB_TASK
    assert load_job(job_id).enqueued_at is not None


def test_broker_down_still_accepts_job_for_the_reaper(
    pg_url, tmp_path, make_tenant, load_job
) -> None:  # type: ignore[no-untyped-def]
    def broken(_job_id: str) -> None:
        raise ConnectionError("broker unreachable")

    app = create_app(make_settings(pg_url, tmp_path), enqueue=broken)
    tenant = make_tenant()
    with TestClient(app) as c:
        response = c.post("/v1/jobs", json=job_body(), headers=tenant.headers)
        assert response.status_code == 201
        # The row is committed and stays queued with no enqueued_at: the reaper re-sends it.
        job = load_job(response.json()["id"])
        assert job.status == "queued" and job.enqueued_at is None
