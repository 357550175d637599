"""Two workers, the same job's message delivered more than once: one lease holder at every
sample, one success, and the duplicate delivery exits before loading any model."""

from __future__ import annotations

import threading

import pytest

from tests.reliability.harness import (
    api_key_for,
    artifact_names,
    event_types,
    job_row,
    outcomes,
    record,
    send_wakeup,
    stack_env,
    submit,
    train_spec,
    wait_finished,
    wait_until,
)

pytestmark = pytest.mark.slow


def test_duplicate_delivery_runs_the_job_once(factory, pg_url, data_dir, make_stack):
    stack = make_stack(stack_env(pg_url, data_dir))
    stack.start(workers=("w1", "w2"), reaper=False)
    key = api_key_for(factory)

    # Enough steps that the job is still training when the third message arrives: 20 tiny
    # steps (0.6 s) could finish between two polls of the sampler.
    job_id = submit(stack.base, key, train_spec(200, 50))
    send_wakeup(stack.env, job_id)  # a second message while both workers are idle

    samples: list[tuple[str, str | None, object]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            row = job_row(factory, job_id)
            samples.append((row.status, row.worker_id, row.lease_token))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        wait_until(
            lambda: (r := job_row(factory, job_id)).stage == "training" and (r.step or 0) >= 2,
            180,
            "training under way",
            context=stack.tail,
        )
        send_wakeup(stack.env, job_id)  # and a third while it trains
        final = wait_finished(factory, job_id, 180, "job finished", stack)
    finally:
        done.set()
        sampler.join(5)
    assert final.status == "succeeded", (final.error, stack.tail())

    # Postgres saw a single lease holder, never a takeover.
    running = [(worker, token) for status, worker, token in samples if status == "running"]
    assert len(running) >= 10, samples[:5]
    holders = {worker for worker, _ in running}
    tokens = {token for _, token in running}
    assert len(holders) == 1 and len(tokens) == 1 and None not in tokens, (holders, tokens)

    types = event_types(factory, job_id)
    assert types.count("started") == 1 and types.count("succeeded") == 1
    assert artifact_names(factory, job_id) == ["adapter.tar"]

    # The holder trained; every duplicate was dropped at the claim, before any model loaded.
    holder_name = next(iter(holders)).split("@")[0]
    other_name = "w2" if holder_name == "w1" else "w1"
    holder, other = stack.log(holder_name), stack.log(other_name)
    assert f"job {job_id} claimed by" in holder
    skip_line = f"job {job_id} is not claimable"
    wait_until(
        lambda: stack.log(other_name).count(skip_line) == 2,
        60,
        "both duplicates skipped",
        context=stack.tail,
    )
    other = stack.log(other_name)
    skipped = other.count(skip_line)
    assert "claimed by" not in other and "training " not in other
    record(
        "duplicate delivery, two workers",
        **outcomes(factory, [job_id]),
        messages=3,
        samples_running=len(running),
        lease_holders=len(holders),
        duplicates_skipped=skipped,
    )
