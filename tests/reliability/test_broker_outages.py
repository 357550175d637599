"""Redis (the broker) restarted three times while a job trains: the running task keeps
training through every outage (its lease heartbeat goes to Postgres, not Redis), and the job
succeeds on its first attempt, trained once. The Redis here is private to the test."""

from __future__ import annotations

import time

import pytest

from tests.reliability.harness import (
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

TOTAL_STEPS = 500  # trains through the three outages (~10 s) at 7-40 tiny steps/s
OUTAGES, OUTAGE_SECONDS = 3, 2.0


def test_running_job_survives_three_broker_outages_on_its_first_attempt(
    private_redis, factory, pg_url, data_dir, make_stack
):
    env = stack_env(pg_url, data_dir, CLO_BROKER_URL=private_redis.url)
    stack = make_stack(env)
    stack.start()
    job_id = submit(stack.base, api_key_for(factory), train_spec(TOTAL_STEPS, 100))

    def step() -> int:
        row = job_row(factory, job_id)
        assert row.status == "running" or row.status == "queued", (row, stack.tail())
        return row.step or 0 if row.stage == "training" else 0

    wait_until(lambda: step() >= 1, 180, "training started", context=stack.tail)
    trained_during_outages = []
    for _ in range(OUTAGES):
        private_redis.kill()
        before = step()
        time.sleep(OUTAGE_SECONDS)
        trained_during_outages.append(step() - before)
        private_redis.start()
        time.sleep(1.0)  # the worker reconnects (Celery retries the broker with backoff)
    assert step() < TOTAL_STEPS, "the job finished before the last outage: raise TOTAL_STEPS"
    # The task kept training while the broker was away (it was not terminated and requeued).
    assert all(n > 0 for n in trained_during_outages), trained_during_outages

    final = wait_finished(factory, job_id, 300, "job finishes", stack)
    assert final.status == "succeeded", (final.error, stack.tail())
    assert final.attempt == 1, final
    types = event_types(factory, job_id)
    assert types.count("started") == 1, types
    assert not {"abandoned", "released", "lease_expired", "failed"} & set(types), types
    # Trained once: every step's metrics exactly once, one adapter.
    assert [s for s, _ in metric_steps(factory, job_id)] == list(range(1, TOTAL_STEPS + 1))
    assert artifact_names(factory, job_id) == ["adapter.tar"]
    assert "Terminating it instead" not in stack.log("w1")
    assert stack.procs["w1"].poll() is None
    record(
        "redis restarted 3x while training",
        **outcomes(factory, [job_id]),
        attempt=final.attempt,
        steps_during_outages=trained_during_outages,
    )
