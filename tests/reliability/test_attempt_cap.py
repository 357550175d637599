"""The process running a job SIGKILLed after each of its claims: after the attempt cap the job
ends `failed` with `worker_lost` instead of being retried forever."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.reliability.harness import (
    api_key_for,
    artifact_names,
    event_types,
    job_row,
    outcomes,
    record,
    stack_env,
    submit,
    train_spec,
    wait_finished,
    wait_until,
)

pytestmark = pytest.mark.slow

MAX_ATTEMPTS = 3  # persistence.settings.Settings.max_attempts, copied onto each job


def test_killed_on_every_attempt_fails_worker_lost_at_the_cap(
    factory, pg_url, data_dir, make_stack
):
    stack = make_stack(stack_env(pg_url, data_dir, CLO_MAX_ATTEMPTS=str(MAX_ATTEMPTS)))
    stack.start(wait_ready=False)
    job_id = submit(stack.base, api_key_for(factory), train_spec(500, 5))
    started = time.monotonic()
    killed: list[int] = []
    for attempt in range(1, MAX_ATTEMPTS + 1):

        def claimed(attempt: int = attempt):
            row = job_row(factory, job_id)
            assert row.status != "succeeded", row
            return row if row.status == "running" and row.attempt == attempt else None

        row = wait_until(claimed, 180, f"attempt {attempt} claimed", context=stack.tail)
        pid = row.worker_pid
        assert pid is not None and pid not in killed, row
        os.kill(pid, signal.SIGKILL)  # the pool process running the job, as the OOM killer
        killed.append(pid)

    final = wait_finished(factory, job_id, 60, "job given up", stack)
    assert final.status == "failed", final
    assert final.error is not None and final.error["code"] == "worker_lost", final.error
    assert final.attempt == MAX_ATTEMPTS and final.lease_token is None
    types = event_types(factory, job_id)
    assert types.count("started") == MAX_ATTEMPTS
    # Between attempts either the reaper requeues the expired lease (a lease_expired event) or
    # Celery's redelivery of the lost task claims the expired lease first: both are fine.
    assert types.count("lease_expired") <= MAX_ATTEMPTS - 1
    assert types[-1] == "failed" and "succeeded" not in types
    assert artifact_names(factory, job_id) == []
    # The worker itself survived its pool processes' deaths.
    assert stack.procs["w1"].poll() is None
    record(
        "worker killed on every attempt",
        **outcomes(factory, [job_id]),
        kills=len(killed),
        attempt=final.attempt,
        error=final.error["code"],
        time_to_fail_s=round(time.monotonic() - started, 1),
    )
