"""Observability across the worker, on a real uvicorn and a real Celery worker (prefork pool,
subprocesses on Postgres + Redis, tiny models): JSON log lines that carry the job id and the
request id of the POST that created the job, and the worker's Prometheus endpoint counting
that job's queue wait, stages and outcome."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from service_cli.demo import build_tiny_models
from service_cli.processes import free_port, start_api, start_worker, stop, wait_http
from tests.support.specs import train_spec
from tests.support.tenants import new_tenant

pytestmark = pytest.mark.slow

STAGES = ["translating", "training", "evaluating", "packaging"]


@dataclass
class Stack:
    base: str
    key: str
    logs: Path
    metrics_url: str
    metrics_dir: Path  # the worker's PROMETHEUS_MULTIPROC_DIR
    worker_pid: int
    succeeded: list[str] = field(default_factory=list)  # jobs this stack ran to the end


@pytest.fixture(scope="module")
def stack(make_service_env, factory, tmp_path_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    data_dir = tmp_path_factory.mktemp("observability")
    build_tiny_models(data_dir / "models")
    metrics_port = free_port()
    metrics_dir = data_dir / "worker-metrics"
    metrics_dir.mkdir()
    env = {
        **make_service_env(data_dir),
        "CLO_LOG_JSON": "true",
        "CLO_WORKER_METRICS_PORT": str(metrics_port),
        "CLO_WORKER_METRICS_HOST": "127.0.0.1",
    }
    logs, port = data_dir / "logs", free_port()
    api = start_api(env, port, logs / "api.log", access_log=False)
    # An operator's folder (the worker's own default is a fresh temporary one), to look into.
    worker_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    name = f"w-{env['CLO_QUEUE']}@obs"
    worker = start_worker(worker_env, env["CLO_QUEUE"], name, logs / "worker.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", api)
        wait_http(f"http://127.0.0.1:{metrics_port}/metrics", worker)
        key = new_tenant(factory, "obs").key
        metrics_url = f"http://127.0.0.1:{metrics_port}"
        yield Stack(base, key, logs, metrics_url, metrics_dir, worker.pid)
    finally:
        stop(worker)
        stop(api)
        redis.Redis.from_url(env["CLO_BROKER_URL"]).delete(env["CLO_QUEUE"])


def _logs(stack: Stack) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in stack.logs.glob("*.log"))


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """Every log line of the file (lines of Celery's start-up banner, printed, are not)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _samples(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(stack.metrics_url + "/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _run_job(stack: Stack, request_id: str) -> dict[str, Any]:
    evaluation = {"heldout_size": 2, "max_new_tokens": 8, "prompt_set_limit": 4}
    headers = {"Authorization": f"Bearer {stack.key}", "X-Request-Id": request_id}
    with httpx.Client(base_url=stack.base, headers=headers, timeout=30) as client:
        created = client.post("/v1/jobs", json=train_spec(2, 2, evaluation=evaluation))
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        assert job["status"] == "succeeded", f"{job}\n{_logs(stack)}"
        stack.succeeded.append(job_id)
        job["events"] = client.get(f"/v1/jobs/{job_id}/events").json()["data"]
    return job  # type: ignore[no-any-return]


def test_worker_logs_and_metrics_follow_the_job_and_its_request(stack: Stack) -> None:
    request_id = f"obs-{uuid.uuid4().hex[:12]}"
    before = _samples(stack)
    job = _run_job(stack, request_id)
    job_id = job["id"]

    # The POST's request id went into the job's first event and its wake-up message.
    assert job["events"][0]["type"] == "queued"
    assert job["events"][0]["data"] == {"request_id": request_id}

    lines = _json_lines(stack.logs / "worker.log")
    assert any(line["message"].endswith(" ready.") for line in lines)  # Celery's own: JSON
    about_job = [line for line in lines if line.get("job_id") == job_id or job_id in str(line)]
    assert all(
        line.get("job_id") == job_id and line.get("request_id") == request_id for line in about_job
    ), [line for line in about_job if line.get("request_id") != request_id]
    messages = [line["message"] for line in about_job]
    assert any(m.startswith("wake-up received for job") for m in messages), messages  # main
    assert any("claimed by" in m for m in messages), messages  # the pool child, from here on
    assert any(m.startswith(f"job {job_id} succeeded") for m in messages), messages
    assert any(m.startswith("Task clo.run_job[") and "succeeded" in m for m in messages)
    # Not a line about the job names it without its ids (Celery's "received" line is ours).
    worker_text = (stack.logs / "worker.log").read_text()
    assert worker_text.count(job_id) == sum(str(line).count(job_id) for line in lines)

    api_lines = _json_lines(stack.logs / "api.log")
    post = next(line for line in api_lines if line["message"].startswith("POST /v1/jobs ->"))
    assert post["request_id"] == request_id and post["job_id"] == job_id

    after = _samples(stack)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    for stage in STAGES:
        assert grew("clo_worker_stage_duration_seconds_count", stage=stage) == 1, stage
        assert grew("clo_worker_stage_duration_seconds_sum", stage=stage) > 0, stage
    assert grew("clo_worker_queue_wait_seconds_count") == 1
    assert grew("clo_worker_job_outcomes_total", outcome="succeeded") == 1
    assert not any(name == "clo_worker_requeues_total" and v for (name, _), v in after.items())
    # The CPU test machine has no CUDA: no GPU samples rather than zeros.
    assert not any(name == "clo_worker_gpu_memory_peak_bytes" for name, _ in after)


def test_pool_processes_fold_their_samples_into_the_archive(stack: Stack) -> None:
    """One pool process per job would leave files per job for every scrape to read: each
    exiting process adds its samples to `*_archive.db` and deletes its own files, and no
    count is lost or doubled by it."""
    before = _samples(stack)
    _run_job(stack, f"obs-{uuid.uuid4().hex[:12]}")
    deadline = time.monotonic() + 20

    def strays() -> list[str]:
        own = (f"_{stack.worker_pid}.db", "_archive.db")
        return [p.name for p in stack.metrics_dir.glob("*.db") if not p.name.endswith(own)]

    while strays() and time.monotonic() < deadline:  # the pool process exits after its job
        time.sleep(0.2)
    assert not strays(), strays()
    assert (stack.metrics_dir / "histogram_archive.db").is_file()
    after = _samples(stack)
    for stage in STAGES:
        key = ("clo_worker_stage_duration_seconds_count", (("stage", stage),))
        assert after[key] - before.get(key, 0.0) == 1, stage
    # Earlier jobs' pool processes are gone: their counts come from the archive, none lost.
    succeeded = after[("clo_worker_job_outcomes_total", (("outcome", "succeeded"),))]
    assert succeeded == len(stack.succeeded)
