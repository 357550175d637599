"""Redis (the broker) restarted empty while one job trains and others wait: the running job
trains on through the outage on its first attempt, the lost wake-ups of the others are re-sent,
and every accepted job ends `succeeded` exactly once. The Redis here is private to the test."""

from __future__ import annotations

import time

import pytest

from tests.reliability.harness import (
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
    wait_until,
)

pytestmark = pytest.mark.slow

LONG_STEPS, SHORT_STEPS, CHECKPOINT_EVERY = 100, 3, 3
OUTAGE_SECONDS = 3.0


def test_redis_restart_loses_no_job_and_runs_none_twice(
    private_redis, factory, pg_url, data_dir, make_stack
):
    # Wake-ups lost with the broker's memory are re-sent after 4 s by the reaper.
    env = stack_env(
        pg_url,
        data_dir,
        CLO_BROKER_URL=private_redis.url,
        CLO_REQUEUE_AFTER_SECONDS="4",
        CLO_PROGRESS_INTERVAL_SECONDS="0.001",  # every trained step's metrics stored at once
    )
    stack = make_stack(env)
    stack.start()
    key = api_key_for(factory)
    running = submit(stack.base, key, train_spec(LONG_STEPS, CHECKPOINT_EVERY))
    queued = [submit(stack.base, key, train_spec(SHORT_STEPS, 2)) for _ in range(2)]
    wait_until(
        lambda: (job_row(factory, running).checkpoint_step or 0) >= CHECKPOINT_EVERY,
        180,
        "first job checkpointed",
        context=stack.tail,
    )
    assert all(job_row(factory, j).status == "queued" for j in queued)

    private_redis.kill()  # every queued message is gone with it
    outage_started = time.monotonic()
    trained_before = job_row(factory, running).step or 0
    during_outage = submit(stack.base, key, train_spec(SHORT_STEPS, 2))  # still accepted
    time.sleep(OUTAGE_SECONDS)
    # The running task is not terminated for the lost broker: it trains on, lease in Postgres.
    during = job_row(factory, running)
    trained_during_outage = (during.step or 0) - trained_before
    assert during.attempt == 1 and (during.status != "running" or trained_during_outage > 0)
    private_redis.start()
    restarted = time.monotonic()
    accepted = [running, *queued, during_outage]
    steps = {running: LONG_STEPS, **{j: SHORT_STEPS for j in accepted[1:]}}

    def all_finished():
        rows = {j: job_row(factory, j) for j in accepted}
        return rows if all(r.status in TERMINAL for r in rows.values()) else None

    finals = wait_until(all_finished, 300, "every accepted job finished", context=stack.tail)
    recovered_s = time.monotonic() - restarted
    succeeded = [j for j, r in finals.items() if r.status == "succeeded"]
    assert succeeded == accepted, (
        {j: (r.status, r.error) for j, r in finals.items()},
        stack.tail(),
    )
    for job_id in accepted:
        types = event_types(factory, job_id)
        assert types.count("succeeded") == 1, (job_id, types)
        assert artifact_names(factory, job_id) == ["adapter.tar"]
        assert [s for s, _ in metric_steps(factory, job_id)] == list(range(1, steps[job_id] + 1))
    # The running job was never interrupted: one attempt, nothing given up or resumed.
    assert finals[running].attempt == 1
    types = event_types(factory, running)
    assert types.count("started") == 1 and not {"abandoned", "released"} & set(types), types
    assert "resumed from" not in stack.log("w1")
    record(
        "redis restarted (queued + running)",
        **outcomes(factory, accepted),
        attempt=finals[running].attempt,
        trained_during_outage=trained_during_outage,
        outage_s=round(restarted - outage_started, 1),
        all_done_s=round(recovered_s, 1),
    )
