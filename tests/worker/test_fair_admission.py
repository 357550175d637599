"""Admission queues instead of refusing, fairly: tenant A queues 6 jobs (past its running cap
of 1, all accepted), tenant B then queues 1, and with one real worker B's job starts right
after A's first, not after all six; A's 7th job is 429 queued_job_limit with Retry-After."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
import redis
from sqlalchemy import select

from persistence.db import session_scope
from persistence.models import Job
from service_cli.demo import build_tiny_models
from service_cli.jobs_client import JobsClient
from service_cli.processes import free_port, start_api, start_worker, stop, wait_http
from tests.support.specs import train_spec
from tests.support.tenants import new_tenant

pytestmark = pytest.mark.slow

A_JOBS = 6


def test_a_tenant_with_many_queued_jobs_does_not_starve_one_with_one(
    make_service_env, factory, tmp_path
):
    data_dir = tmp_path / "data"
    build_tiny_models(data_dir / "models")
    env = make_service_env(data_dir)
    env.update(CLO_MAX_CONCURRENT_JOBS_PER_TENANT="1", CLO_MAX_QUEUED_JOBS_PER_TENANT=str(A_JOBS))
    logs = tmp_path / "logs"
    port = free_port()
    api = start_api(env, port, logs / "api.log")
    worker = start_worker(env, env["CLO_QUEUE"], "w-fair@test", logs / "worker.log")
    base = f"http://127.0.0.1:{port}"
    spec = train_spec(2, 2)
    try:
        wait_http(f"{base}/healthz", api)
        tenant_a, tenant_b = new_tenant(factory, "fair-a"), new_tenant(factory, "fair-b")
        a, b = JobsClient(base, tenant_a.key), JobsClient(base, tenant_b.key)
        a_ids = [a.submit(spec)["id"] for _ in range(A_JOBS)]
        refused = httpx.post(f"{base}/v1/jobs", json=spec, headers=tenant_a.headers)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "queued_job_limit"
        assert int(refused.headers["retry-after"]) > 0
        b_id = b.submit(spec)["id"]

        deadline = time.monotonic() + 240
        while (state := b.get(b_id))["status"] not in ("succeeded", "failed"):
            tails = "\n".join(p.read_text()[-3000:] for p in logs.glob("*.log"))
            assert time.monotonic() < deadline, tails
            time.sleep(0.2)
        assert state["status"] == "succeeded", state["error"]
        # Started in this order; B's job waited for at most the cap's worth of A's (1).
        with session_scope(factory) as session:
            rows = session.execute(
                select(Job.id, Job.started_at).where(Job.started_at.is_not(None))
                .where(Job.id.in_([uuid.UUID(i) for i in [*a_ids, b_id]]))
                .order_by(Job.started_at)
            ).all()  # fmt: skip
        order = [str(job_id) for job_id, _ in rows]
        assert order.index(b_id) == 1, order
        assert order[0] == a_ids[0]
        # A's jobs still wait queued (none refused) and are taken in their own order.
        waiting = [i for i in a_ids if a.get(i)["status"] == "queued"]
        assert waiting and waiting == sorted(waiting, key=a_ids.index)
        for job_id in a_ids:
            a.cancel(job_id)
        a.close()
        b.close()
    finally:
        stop(worker)
        stop(api)
        redis.Redis.from_url(env["CLO_BROKER_URL"]).delete(env["CLO_QUEUE"])
