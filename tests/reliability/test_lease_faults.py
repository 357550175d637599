"""Fast checks of the fault paths the process scenarios rely on: fenced writes wait out a
database outage, and a lease given up mid-job is requeued, or failed at the attempt cap."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.exc import OperationalError

from persistence.db import session_scope
from persistence.models import Job
from persistence.repositories import leases
from tests.support.database import insert_job
from worker.lease import HeldLease


def _claimed(factory, max_attempts: int) -> leases.Lease:  # noqa: ANN001
    job_id = insert_job(factory, max_attempts=max_attempts)
    with session_scope(factory) as session:
        lease = leases.claim_job(session, job_id, "w:1", 60)
    assert lease is not None
    return lease


def test_write_retries_while_the_database_is_unreachable(factory):
    lease = _claimed(factory, 3)
    held = HeldLease(lease, factory, 60, 30, db_retry_seconds=30)
    calls: list[int] = []

    def flaky(session, lease, stage):  # noqa: ANN001
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("UPDATE jobs", {}, Exception("connection refused"))
        return leases.set_stage(session, lease, stage)

    assert held.write(flaky, "training") is True
    assert len(calls) == 3 and not held.lost.is_set()
    with session_scope(factory) as session:
        assert session.get(Job, lease.job_id).stage == "training"


def test_write_gives_up_after_the_retry_window(factory):
    held = HeldLease(_claimed(factory, 3), factory, 60, 30, db_retry_seconds=0.4)

    def down(session, lease):  # noqa: ANN001
        raise OperationalError("UPDATE jobs", {}, Exception("connection refused"))

    with pytest.raises(OperationalError):
        held.write(down)


def test_write_does_not_retry_other_errors(factory):
    held = HeldLease(_claimed(factory, 3), factory, 60, 30)
    calls: list[int] = []

    def broken(session, lease):  # noqa: ANN001
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        held.write(broken)
    assert calls == [1]


@pytest.mark.parametrize(("max_attempts", "outcome"), [(3, "requeued"), (1, "failed")])
def test_abandoned_lease_is_reaped_at_once(factory, max_attempts, outcome):
    lease = _claimed(factory, max_attempts)
    with session_scope(factory) as session:
        assert leases.abandon_lease(session, lease, "worker process terminated")
    with session_scope(factory) as session:
        reaped = [r for r in leases.reap_expired(session) if r.job_id == lease.job_id]
    assert [r.outcome for r in reaped] == [outcome]
    with session_scope(factory) as session:
        job = session.get(Job, lease.job_id)
        assert job.lease_token is None and job.attempt == 1
        if outcome == "failed":  # at the cap: never left queued with no attempt to run it
            assert job.status == "failed" and job.error["code"] == "worker_lost"
        else:
            assert job.status == "queued"


def test_stale_holder_cannot_abandon_a_taken_lease(factory):
    lease = _claimed(factory, 3)
    stale = leases.Lease(lease.job_id, uuid.uuid4(), lease.attempt, "old:1")
    with session_scope(factory) as session:
        assert not leases.abandon_lease(session, stale, "late")
