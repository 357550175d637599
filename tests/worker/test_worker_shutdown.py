"""Soft shutdown with real processes: SIGTERM mid-training checkpoints and releases the job,
and a new worker resumes it from the checkpoint."""

from __future__ import annotations

import os
import signal
import time

import pytest
from sqlalchemy import select

from persistence.db import session_scope
from persistence.models import JobEvent, JobMetric
from service_cli.demo import build_tiny_models
from service_cli.jobs_client import JobsClient
from service_cli.processes import free_port, start_api, start_worker, stop, wait_http

pytestmark = pytest.mark.slow

CHECKPOINT_EVERY = 3


def _wait(client: JobsClient, job_id: str, ok, timeout: float, what: str) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(job_id)
        if ok(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: {what} not reached in {timeout}s: {job}")


def test_sigterm_releases_job_and_next_worker_resumes_from_checkpoint(
    make_service_env, new_api_key, factory, tmp_path
):
    build_tiny_models(tmp_path / "models")
    env = make_service_env(tmp_path)
    logs = tmp_path / "logs"
    port = free_port()
    api = start_api(env, port, logs / "api.log")
    first = start_worker(env, env["CLO_QUEUE"], "first@test", logs / "w1.log")
    second = None
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", api)
        client = JobsClient(f"http://127.0.0.1:{port}", new_api_key())
        total = 60  # long enough that SIGTERM lands mid-training even on a loaded machine
        job = client.submit(
            {
                "base_model": "tiny-qwen2",
                "target_language": "de",
                "data_size": 12,
                "seed_data": {"source": "parallel"},
                "hyperparameters": {
                    "max_steps": total,
                    "batch_size": 2,
                    "max_length": 128,
                    "checkpoint_every": CHECKPOINT_EVERY,
                },
                "evaluation": {"enabled": False, "heldout_size": 0},
            }
        )
        _wait(
            client,
            job["id"],
            lambda j: j["stage"] == "training" and (j["progress"]["step"] or 0) >= 4,
            180,
            "training step 4",
        )
        os.kill(first.pid, signal.SIGTERM)  # what `docker stop` does: main process only
        released = _wait(client, job["id"], lambda j: j["status"] == "queued", 60, "released")
        assert released["attempt"] == 0  # a clean hand-back costs no attempt
        first.wait(60)  # the worker exits once its task returned

        second = start_worker(env, env["CLO_QUEUE"], "second@test", logs / "w2.log")
        final = _wait(
            client, job["id"], lambda j: j["status"] in {"succeeded", "failed"}, 180, "the end"
        )
        assert final["status"] == "succeeded", final["error"]
        assert final["attempt"] == 1
        assert [a["name"] for a in final["artifacts"]] == ["adapter.tar"]
        with session_scope(factory) as s:
            types = s.scalars(
                select(JobEvent.type).where(JobEvent.job_id == job["id"]).order_by(JobEvent.seq)
            ).all()
            steps = s.scalars(select(JobMetric.step).where(JobMetric.job_id == job["id"])).all()
        assert "released" in types and types[-1] == "succeeded"
        assert types.count("started") == 2
        assert sorted(steps) == list(range(1, total + 1))  # every step's metrics, once each
        # The second worker started from the stop checkpoint, so it ran only the rest.
        log = (logs / "w2.log").read_text()
        assert "resumed from" in log
    finally:
        for proc in (second, first, api):
            if proc is not None:
                stop(proc)
