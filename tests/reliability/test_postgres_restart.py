"""Postgres restarted while a job trains: the API answers 503 (never 500) during the outage,
and the job still ends `succeeded` once, afterwards. The cluster is private to the test."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import httpx
import pytest

from persistence.db import make_engine, make_session_factory
from persistence.migrate import upgrade_head
from tests.reliability.harness import (
    LEASE_SECONDS,
    TERMINAL,
    api_key_for,
    artifact_names,
    event_types,
    job_row,
    metric_steps,
    outcomes,
    record,
    stack_env,
    submit,
    train_spec,
    wait_finished,
    wait_until,
)

pytestmark = pytest.mark.slow

TOTAL_STEPS, CHECKPOINT_EVERY = 40, 5
OUTAGE_SECONDS = LEASE_SECONDS + 2  # longer than a lease: heartbeats fail until it expires


def test_postgres_restart_mid_job_is_503_then_job_completes(private_postgres, data_dir, make_stack):
    url = private_postgres.create_database(f"clo_rel_{uuid.uuid4().hex[:8]}")
    upgrade_head(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        stack = make_stack(stack_env(url, data_dir))
        stack.start()
        key = api_key_for(factory)
        auth = {"Authorization": f"Bearer {key}"}
        job_id = submit(stack.base, key, train_spec(TOTAL_STEPS, CHECKPOINT_EVERY))
        wait_until(
            lambda: (job_row(factory, job_id).checkpoint_step or 0) >= CHECKPOINT_EVERY,
            180,
            "training checkpointed",
            context=stack.tail,
        )

        step_at_stop = job_row(factory, job_id).step or 0
        private_postgres.stop()
        engine.dispose()  # our pooled connections died with it
        down_at = time.monotonic()
        codes: Counter[str] = Counter()
        with httpx.Client(base_url=stack.base, headers=auth, timeout=10) as http:
            while time.monotonic() - down_at < OUTAGE_SECONDS:
                for method, path, body in (
                    ("GET", f"/v1/jobs/{job_id}", None),
                    ("GET", "/v1/jobs", None),
                    ("GET", f"/v1/jobs/{job_id}/events", None),
                    ("POST", "/v1/jobs", train_spec(2, 1)),
                ):
                    response = http.request(method, path, json=body)
                    codes[f"{response.status_code}"] += 1
                    if response.status_code == 503:
                        assert response.json()["error"]["type"] == "system_error"
                        assert response.headers.get("retry-after")
                time.sleep(0.2)
            health = http.get("/healthz").status_code
            ready = http.get("/readyz").status_code
        assert set(codes) == {"503"}, (codes, stack.tail())
        assert health == 200 and ready == 503
        private_postgres.start()
        restarted_at = time.monotonic()

        # The API recovers at once; the job finishes.
        answered = wait_until(
            lambda: httpx.get(f"{stack.base}/v1/jobs/{job_id}", headers=auth).status_code == 200,
            30,
            "API answers again",
        )
        assert answered
        wait_until(
            lambda: (
                (r := job_row(factory, job_id)).status in TERMINAL or (r.step or 0) > step_at_stop
            ),
            60,
            "job makes progress again",
            context=stack.tail,
        )
        progressing_s = time.monotonic() - restarted_at
        final = wait_finished(factory, job_id, 180, "job finished after the outage", stack)
        recovered_s = time.monotonic() - restarted_at
        assert final.status == "succeeded", (final.error, stack.tail())
        # The worker waited for the database instead of crashing: same lease, same attempt.
        assert "database unavailable during" in stack.log("w1")
        types = event_types(factory, job_id)
        assert final.attempt == 1 and types.count("started") == 1, (final, types)
        assert types.count("succeeded") == 1 and "lease_expired" not in types
        assert "resumed from" not in stack.log("w1")  # it paused; no step was trained twice
        assert artifact_names(factory, job_id) == ["adapter.tar"]
        steps = [s for s, _ in metric_steps(factory, job_id)]
        assert steps == list(range(1, TOTAL_STEPS + 1))
        record(
            "postgres restarted mid-job",
            **outcomes(factory, [job_id]),
            steps_redone=0 if "resumed from" not in stack.log("w1") else "resumed",
            outage_s=OUTAGE_SECONDS,
            api_503=codes["503"],
            api_other=sum(codes.values()) - codes["503"],
            recover_s=round(progressing_s, 1),
            done_s=round(recovered_s, 1),
        )
    finally:
        engine.dispose()
