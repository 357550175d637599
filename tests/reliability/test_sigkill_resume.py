"""SIGKILL a worker mid-training: the reaper requeues the job, a restarted worker resumes from
the last checkpoint (translations and reference log-probs reused) and it succeeds once."""

from __future__ import annotations

import re
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
    stored_files,
    submit,
    train_spec,
    translation_cache_size,
    wait_finished,
    wait_until,
)

pytestmark = pytest.mark.slow

CHECKPOINT_EVERY = 3
TOTAL_STEPS = 150  # a wide window: the kill lands long before training ends (30 took 1 s)


def test_sigkill_mid_training_resumes_from_checkpoint(factory, pg_url, data_dir, make_stack):
    # Progress (with each step's metrics) written after every step: the steps trained before
    # the kill are all in Postgres, so "steps redone" is measured, not estimated.
    stack = make_stack(stack_env(pg_url, data_dir, CLO_PROGRESS_INTERVAL_SECONDS="0.001"))
    stack.start(wait_ready=False)
    key = api_key_for(factory)
    # Machine-translated seed data, so the resumed attempt has translations it could redo.
    spec = train_spec(
        TOTAL_STEPS,
        CHECKPOINT_EVERY,
        data_size=8,
        seed_data={"source": "builtin"},
        translator={"model": "tiny-m2m100", "num_beams": 1, "quality_check": "off"},
    )
    job_id = submit(stack.base, key, spec)

    def checkpointed():
        row = job_row(factory, job_id)
        assert row.status not in TERMINAL, (row, stack.tail())
        return row if (row.checkpoint_step or 0) >= CHECKPOINT_EVERY else None

    at_kill = wait_until(checkpointed, 240, "first checkpoint", context=stack.tail)
    stack.kill("w1")  # SIGKILL the whole worker: main process and the pool child training
    killed_at = time.monotonic()
    cached_translations = translation_cache_size(factory)
    before_restart = set(metric_steps(factory, job_id))
    trained_before = max(step for step, _ in before_restart)

    requeued = wait_until(
        lambda: (r := job_row(factory, job_id)).status == "queued" and r,
        60,
        "reaper requeues the job",
        context=stack.tail,
    )
    assert requeued.attempt == 1 and requeued.lease_token is None
    stack.start_worker("w2")
    wait_until(
        lambda: (r := job_row(factory, job_id)).attempt == 2 and r.stage == "training",
        120,
        "training again on the restarted worker",
        context=stack.tail,
    )
    recovered_s = time.monotonic() - killed_at
    final = wait_finished(factory, job_id, 240, "job finishes on the restarted worker", stack)
    assert final.status == "succeeded", (final.error, stack.tail())
    assert final.attempt == 2

    # Resumed from a checkpoint at or after the one recorded before the kill.
    w2 = stack.log("w2")
    resumed = re.search(r"resumed from \S+ at step (\d+)", w2)
    assert resumed, stack.tail()
    resume_step = int(resumed.group(1))
    assert resume_step % CHECKPOINT_EVERY == 0
    assert at_kill.checkpoint_step <= resume_step <= trained_before
    steps_redone = trained_before - resume_step
    assert 0 <= steps_redone <= CHECKPOINT_EVERY, (trained_before, resume_step)
    # Every step's metrics exactly once; rows written by the second attempt start right
    # after the checkpoint it resumed from.
    steps = metric_steps(factory, job_id)
    assert [s for s, _ in steps] == list(range(1, TOTAL_STEPS + 1))
    first_after_resume = min(s for s, created in steps if (s, created) not in before_restart)
    assert first_after_resume == resume_step + 1
    # Nothing translated again, reference log-probs read from the cache, no model reload of MT.
    assert translation_cache_size(factory) == cached_translations
    assert "translated " in stack.log("w1") and "translated " not in w2
    assert "reference log-probs loaded from cache" in w2

    types = event_types(factory, job_id)
    assert types.count("started") == 2 and types.count("lease_expired") == 1
    assert types.count("succeeded") == 1 and types[-1] == "succeeded"
    assert artifact_names(factory, job_id) == ["adapter.tar"]
    assert stored_files(data_dir, job_id) == ["adapter.tar"]  # no partial left behind
    record(
        "sigkill worker mid-training",
        **outcomes(factory, [job_id]),
        checkpoint_every=CHECKPOINT_EVERY,
        trained_before_kill=trained_before,
        resumed_at=resume_step,
        steps_redone=steps_redone,
        recover_s=round(recovered_s, 1),
    )
