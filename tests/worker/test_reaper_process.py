"""The reaper as a real process: expired leases requeued, lost wake-ups re-sent through Redis."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import redis
from sqlalchemy import select, update

from persistence.db import session_scope
from persistence.models import Job, JobEvent, utcnow
from persistence.repositories import leases

ROOT = Path(__file__).resolve().parents[2]


def _run_reaper(pg_url: str, redis_url: str, queue: str, tmp_path: Path) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CLO_DATABASE_URL": pg_url,
        "CLO_BROKER_URL": redis_url,
        "CLO_QUEUE": queue,
        "CLO_DATA_DIR": str(tmp_path),
        "CLO_REQUEUE_AFTER_SECONDS": "60",
    }
    done = subprocess.run(
        [sys.executable, "-m", "worker.reaper", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _queued_job_ids(client: redis.Redis, queue: str) -> list[str]:
    ids = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == "clo.run_job"
        ids.append(message["headers"]["argsrepr"].strip("[](),'\""))
    return ids


def test_reaper_requeues_expired_and_resends_lost_wakeups(factory, make_job, pg_url, tmp_path):
    expired = make_job()
    with session_scope(factory) as s:
        assert leases.claim_job(s, expired, "dead-worker", 60) is not None
        s.execute(
            update(Job)
            .where(Job.id == expired)
            .values(lease_expires_at=utcnow() - timedelta(seconds=5))
        )
    lost = make_job(created_at=utcnow() - timedelta(minutes=30), enqueued_at=None)
    fresh = make_job()  # just created: its own wake-up is still on the way
    queue = f"reaper-{uuid.uuid4().hex[:8]}"
    redis_url = f"redis://127.0.0.1:6379/{random.randint(1, 15)}"
    client = redis.Redis.from_url(redis_url)
    try:
        _run_reaper(pg_url, redis_url, queue, tmp_path)
        sent = _queued_job_ids(client, queue)
        assert str(expired) in sent and str(lost) in sent and str(fresh) not in sent
        assert len(sent) == len(set(sent))  # one wake-up per job
        with session_scope(factory) as s:
            job = s.get(Job, expired)
            assert job.status == "queued" and job.lease_token is None and job.attempt == 1
            assert job.enqueued_at is not None
            assert s.get(Job, lost).enqueued_at is not None
            types = s.scalars(
                select(JobEvent.type).where(JobEvent.job_id == expired).order_by(JobEvent.seq)
            ).all()
        assert types == ["started", "lease_expired"]
        # A second pass right away sends nothing new for them: they were just enqueued.
        client.delete(queue)
        _run_reaper(pg_url, redis_url, queue, tmp_path)
        again = _queued_job_ids(client, queue)
        assert str(expired) not in again and str(lost) not in again
    finally:
        client.delete(queue)
