"""A cancel reaches a running job within about a step, not at the next heartbeat: a real API
and Celery worker, the production heartbeat (20 s), seconds from POST cancel to `cancelled`,
during training and during evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from service_cli.demo import build_tiny_models
from service_cli.jobs_client import JobsClient
from service_cli.processes import free_port, start_api, start_worker, stop, wait_http
from tests.support.specs import train_spec
from tests.support.tenants import new_tenant

pytestmark = pytest.mark.slow

HEARTBEAT_SECONDS = 20  # the default: before the per-step check a cancel waited for it


@dataclass
class Service:
    client: JobsClient
    logs: Path


@pytest.fixture(scope="module")
def service(make_service_env, factory, tmp_path_factory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("cancel")
    build_tiny_models(root / "data" / "models")
    env = make_service_env(root / "data")
    env.update(CLO_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS), CLO_LEASE_SECONDS="120")
    logs = root / "logs"
    port = free_port()
    api = start_api(env, port, logs / "api.log")
    worker = start_worker(env, env["CLO_QUEUE"], "w-cancel@test", logs / "worker.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", api)
        client = JobsClient(f"http://127.0.0.1:{port}", new_tenant(factory, "cancel").key)
        yield Service(client, logs)
        client.close()
    finally:
        stop(worker)
        stop(api)
        redis.Redis.from_url(env["CLO_BROKER_URL"]).delete(env["CLO_QUEUE"])


def _wait(service: Service, job_id: str, probe: Callable[[dict[str, Any]], bool],
          timeout: float) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        job = service.client.get(job_id)
        if probe(job):
            return job
        if time.monotonic() > deadline:
            tails = "\n".join(p.read_text()[-3000:] for p in service.logs.glob("*.log"))
            raise AssertionError(f"{job['status']} {job['stage']}\n{tails}")
        time.sleep(0.05)


def _cancel_latency(service: Service, spec: dict[str, Any], stage: str) -> float:
    job = service.client.submit(spec)
    _wait(service, job["id"],
          lambda j: j["stage"] == stage and (j["progress"]["step"] or 0) >= 1, 300)  # fmt: skip
    time.sleep(1.0)  # past the claim's first heartbeat, so it is not what delivers the cancel
    asked = time.monotonic()
    service.client.cancel(job["id"])
    done = _wait(service, job["id"], lambda j: j["status"] not in ("running", "cancelling"), 60)
    latency = time.monotonic() - asked
    print(f"\ncancel latency during {stage}: {latency:.2f} s (heartbeat {HEARTBEAT_SECONDS} s)")
    assert done["status"] == "cancelled"
    return latency


def test_cancel_reaches_a_training_job_within_seconds(service: Service) -> None:
    latency = _cancel_latency(service, train_spec(5000, 1000), "training")
    assert latency < 5.0, latency


def test_cancel_reaches_an_evaluating_job_within_seconds(service: Service) -> None:
    # Many prompts with long answers: the evaluation outlasts the wait and the cancel.
    evaluation = {"heldout_size": 4, "max_new_tokens": 256, "prompt_set_limit": 200}
    latency = _cancel_latency(service, train_spec(2, 2, evaluation=evaluation), "evaluating")
    assert latency < 5.0, latency
