"""GPU-aware queues end to end: the API (CLO_GPU_CLASSES=[1, 80]) routes a tiny job to the
1 GiB class's queue, and a worker started with CLO_GPU_MEMORY_GIB=1 and no --queues, the
only worker, consumes that queue and runs it; a job no class holds is refused at POST."""

from __future__ import annotations

import json
import sys
import time
import uuid

import httpx
import pytest
import redis

from persistence.db import session_scope
from persistence.models import Job
from service_cli.demo import build_tiny_models
from service_cli.jobs_client import JobsClient
from service_cli.processes import free_port, spawn, start_api, stop, wait_http
from tests.support.specs import train_spec
from tests.support.tenants import new_tenant

pytestmark = pytest.mark.slow


def test_a_job_runs_on_the_worker_of_its_gpu_class(make_service_env, factory, tmp_path):
    data_dir = tmp_path / "data"
    build_tiny_models(data_dir / "models")
    # A 13B-sized model the API knows by its config.json only.
    big = data_dir / "models" / "big-lm"
    big.mkdir()
    (big / "config.json").write_text(json.dumps({
        "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
        "num_attention_heads": 40, "num_key_value_heads": 40, "vocab_size": 32000,
    }))  # fmt: skip
    env = make_service_env(data_dir)
    env["CLO_GPU_CLASSES"] = "[1, 80]"
    logs = tmp_path / "logs"
    port = free_port()
    api = start_api(env, port, logs / "api.log")
    worker_cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
                  "--concurrency", "1", "--hostname", "w-1gb@test"]  # fmt: skip
    worker = spawn(worker_cmd, {**env, "CLO_GPU_MEMORY_GIB": "1"}, logs / "worker.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", api)
        tenant = new_tenant(factory, "gpu-class")
        client = JobsClient(base, tenant.key)
        too_big = dict(train_spec(2, 2), base_model="big-lm", trainable="full")
        refused = httpx.post(f"{base}/v1/jobs", json=too_big, headers=tenant.headers)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "job_too_large"
        job = client.submit(train_spec(2, 2))
        deadline = time.monotonic() + 240
        while (state := client.get(job["id"]))["status"] not in ("succeeded", "failed"):
            tails = "\n".join(p.read_text()[-3000:] for p in logs.glob("*.log"))
            assert time.monotonic() < deadline, tails
            time.sleep(0.3)
        assert state["status"] == "succeeded", state["error"]
        with session_scope(factory) as session:
            row = session.get(Job, uuid.UUID(job["id"]))
            assert row is not None
            assert row.resolved["memory_estimate_bytes"] < 0.9 * 1024**3
        # The worker listened on the class queue only.
        log = (logs / "worker.log").read_text()
        assert f"{env['CLO_QUEUE']}-1gb" in log
        client.close()
    finally:
        stop(worker)
        stop(api)
        redis.Redis.from_url(env["CLO_BROKER_URL"]).delete(f"{env['CLO_QUEUE']}-1gb")
