"""The pool process running a job terminated from outside (SIGTERM: Celery cancelling a task,
an operator, a cold shutdown) hands the job back with its attempt refunded; only a death of
the job's own process (SIGKILL, see test_attempt_cap) counts toward the attempt cap."""

from __future__ import annotations

import os
import signal

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

TOTAL_STEPS, CHECKPOINT_EVERY, TERMINATIONS = 120, 5, 3


def test_terminated_task_is_released_without_counting_an_attempt(
    factory, pg_url, data_dir, make_stack
):
    # A cap of 1: a single counted attempt would fail the job worker_lost.
    env = stack_env(pg_url, data_dir, CLO_MAX_ATTEMPTS="1", CLO_PROGRESS_INTERVAL_SECONDS="0.001")
    stack = make_stack(env)
    stack.start()
    job_id = submit(stack.base, api_key_for(factory), train_spec(TOTAL_STEPS, CHECKPOINT_EVERY))
    terminated: list[int] = []
    for n in range(1, TERMINATIONS + 1):
        row = wait_until(
            lambda: (
                (r := job_row(factory, job_id)).status == "running"
                and r.stage == "training"
                and r.worker_pid not in terminated
                and (r.step or 0) > (r.checkpoint_step or 0)
                and r
            ),
            180,
            f"training (round {n})",
            context=stack.tail,
        )
        assert row.attempt == 1, row
        os.kill(row.worker_pid, signal.SIGTERM)
        terminated.append(row.worker_pid)
        wait_until(
            lambda n=n: event_types(factory, job_id).count("released") == n,
            60,
            f"job released (round {n})",
            context=stack.tail,
        )

    final = wait_finished(factory, job_id, 240, "job finishes", stack)
    assert final.status == "succeeded", (final.error, stack.tail())
    assert final.attempt == 1
    types = event_types(factory, job_id)
    assert types.count("started") == TERMINATIONS + 1 and types.count("released") == TERMINATIONS
    assert not {"abandoned", "lease_expired", "failed"} & set(types), types
    assert [s for s, _ in metric_steps(factory, job_id)] == list(range(1, TOTAL_STEPS + 1))
    assert artifact_names(factory, job_id) == ["adapter.tar"]
    assert stack.procs["w1"].poll() is None
    record(
        "task terminated (SIGTERM) 3x",
        **outcomes(factory, [job_id]),
        terminations=TERMINATIONS,
        attempt=final.attempt,
        max_attempts=1,
    )
