"""A worker paused (SIGSTOP) past its lease while another takes the job over, then resumed:
it writes nothing, no checkpoint above all (the new holder resumes only from the checkpoint
committed in Postgres), and the job ends `succeeded` once, with every step's metrics once."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

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
    stored_files,
    submit,
    train_spec,
    wait_finished,
    wait_until,
)

pytestmark = pytest.mark.slow

TOTAL_STEPS, CHECKPOINT_EVERY = 120, 5


def _files(folder: Path) -> set[str]:
    """Everything under a folder (hidden partial checkpoints too); empty once it is gone."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def test_paused_worker_resumed_after_takeover_writes_no_checkpoint(
    factory, pg_url, data_dir, make_stack
):
    stack = make_stack(stack_env(pg_url, data_dir, CLO_PROGRESS_INTERVAL_SECONDS="0.001"))
    stack.start(workers=("w1", "w2"))
    job_id = submit(stack.base, api_key_for(factory), train_spec(TOTAL_STEPS, CHECKPOINT_EVERY))
    first = wait_until(
        lambda: (
            (r := job_row(factory, job_id)).attempt == 1
            and (r.checkpoint_step or 0) >= CHECKPOINT_EVERY
            and r
        ),
        180,
        "first checkpoint committed",
        context=stack.tail,
    )
    paused_pid = first.worker_pid
    assert paused_pid is not None and first.lease_token is not None
    os.kill(paused_pid, signal.SIGSTOP)  # the pool process training: frozen mid-step
    try:
        committed = job_row(factory, job_id).checkpoint_step  # stable while it is frozen
        paused_name = first.worker_id.split("@")[0]  # "w1@reliability:<pid>" -> "w1"
        taker = "w2" if paused_name == "w1" else "w1"
        # The reaper requeues the expired lease; the other worker claims and trains on.
        second = wait_until(
            lambda: (
                (r := job_row(factory, job_id)).attempt == 2
                and (r.checkpoint_step or 0) > (committed or 0)
                and r
            ),
            120,
            "the other worker took over and committed a checkpoint",
            context=stack.tail,
        )
        assert second.worker_pid != paused_pid
        checkpoints = data_dir / "work" / job_id / "train" / "checkpoints"
        paused_folder = checkpoints / f"owner-{first.lease_token.hex}"
        before = _files(paused_folder)
        saved_before = stack.log(paused_name).count("checkpoint saved at step")
    finally:
        os.kill(paused_pid, signal.SIGCONT)
    wait_until(
        lambda: "lease lost" in stack.log(paused_name),
        60,
        "the resumed worker notices it lost the lease",
        context=stack.tail,
    )
    final = wait_finished(factory, job_id, 240, "job finishes on the new holder", stack)

    # The resumed worker wrote no checkpoint, not even the one a stop normally writes.
    assert stack.log(paused_name).count("checkpoint saved at step") == saved_before
    assert _files(paused_folder) <= before, _files(paused_folder) - before
    # The new holder resumed from the checkpoint committed before the pause, not from disk.
    resumed = re.search(r"resumed from (\S+) at step (\d+)", stack.log(taker))
    assert resumed, stack.tail()
    assert int(resumed.group(2)) == committed
    assert f"owner-{first.lease_token.hex}" in resumed.group(1)

    assert final.status == "succeeded" and final.attempt == 2, (final, stack.tail())
    types = event_types(factory, job_id)
    assert types.count("started") == 2 and types.count("succeeded") == 1, types
    assert [s for s, _ in metric_steps(factory, job_id)] == list(range(1, TOTAL_STEPS + 1))
    assert artifact_names(factory, job_id) == ["adapter.tar"]
    assert stored_files(data_dir, job_id) == ["adapter.tar"]
    # Removed once the job succeeded: the holder commits the status first, then removes the
    # folder, so on a loaded machine the removal can trail the status by a moment. A folder
    # the fenced worker re-created would stay and fail this.
    work = data_dir / "work" / job_id
    wait_until(lambda: not work.exists(), 30, "the work folder removed", context=stack.tail)
    record(
        "worker paused past its lease, resumed after takeover",
        **outcomes(factory, [job_id]),
        committed_before_pause=committed,
        resumed_at=int(resumed.group(2)),
        checkpoints_written_after_resume=0,
    )
