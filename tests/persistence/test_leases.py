"""The lease repository against the real Postgres: claim, fencing, release, the reaper."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from persistence.artifact_store import StoredObject
from persistence.db import session_scope
from persistence.models import Artifact, Job, JobEvent, JobMetric, utcnow
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import leases


def _job(factory, job_id):
    with session_scope(factory) as s:
        job = jobs_repo.get_job(s, job_id)
        s.expunge(job)
        return job


def _events(factory, job_id):
    with session_scope(factory) as s:
        rows = s.execute(
            select(JobEvent.seq, JobEvent.type)
            .where(JobEvent.job_id == job_id)
            .order_by(JobEvent.seq)
        ).all()
        return [(seq, type_) for seq, type_ in rows]


def _claim(factory, job_id, worker="w1", lease_seconds=60):
    with session_scope(factory) as s:
        return leases.claim_job(s, job_id, worker, lease_seconds)


def _set(factory, job_id, **values):
    with session_scope(factory) as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))


def _expire(factory, job_id):
    _set(factory, job_id, lease_expires_at=utcnow() - timedelta(seconds=1))


def _request_cancel(factory, job_id):
    """A cancel requested while the job runs, through the API's own repository function."""
    with session_scope(factory) as s:
        assert jobs_repo.request_cancel(s, jobs_repo.get_job(s, job_id)).status == "cancelling"


def test_claim_sets_running_and_second_claim_fails(factory, make_job):
    job_id = make_job()
    lease = _claim(factory, job_id, "w1")
    assert lease is not None and lease.attempt == 1
    job = _job(factory, job_id)
    assert job.status == "running" and job.lease_token == lease.token
    assert job.worker_id == "w1" and job.lease_expires_at > utcnow()
    # A duplicate delivery while the lease is live gets nothing and changes nothing.
    assert _claim(factory, job_id, "w2") is None
    after = _job(factory, job_id)
    assert after.worker_id == "w1" and after.lease_token == lease.token and after.attempt == 1
    assert _events(factory, job_id) == [(1, "started")]


def test_started_event_does_not_name_the_worker_host(factory, make_job):
    # Events are shown to the tenant: hostname:pid stays in the row, for operators only.
    job_id = make_job()
    lease = _claim(factory, job_id, "gpu-node-7.internal:4242")
    assert lease is not None
    assert _job(factory, job_id).worker_id == "gpu-node-7.internal:4242"
    with session_scope(factory) as s:
        event = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id)).one()
        message, data = event.message, event.data
    assert message == "attempt 1" and data == {"attempt": 1}
    assert "gpu-node" not in f"{message} {data}" and "4242" not in f"{message} {data}"


def test_concurrent_claims_have_one_winner(factory, make_job):
    job_id = make_job()
    results: list[object] = []
    barrier = threading.Barrier(6)

    def claim(i: int) -> None:
        barrier.wait()
        results.append(_claim(factory, job_id, f"w{i}"))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert _job(factory, job_id).lease_token == winners[0].token


def test_stale_token_writes_change_nothing(factory, make_job):
    job_id = make_job()
    old = _claim(factory, job_id, "w1")
    _expire(factory, job_id)
    new = _claim(factory, job_id, "w2")
    assert new is not None and new.token != old.token and new.attempt == 2
    with session_scope(factory) as s:
        assert not leases.record_progress(
            s, old, step=5, total_steps=10, percent=50.0, eta_seconds=1.0
        )
        assert not leases.record_metrics(s, old, [(1, {"loss": 0.5})])
        assert not leases.add_event(s, old, "stale", "from the old worker")
        assert not leases.set_stage(s, old, "training")
        stored = StoredObject(key="jobs/x/adapter.tar", size=1, sha256="0" * 64)
        assert not leases.record_artifact(s, old, "adapter.tar", "adapter", stored)
        assert not leases.finish_job(s, old, "succeeded")
        assert leases.renew_lease(s, old, 60) is None
    job = _job(factory, job_id)
    assert job.status == "running" and job.step is None and job.stage is None
    assert job.lease_token == new.token
    with session_scope(factory) as s:
        assert s.scalar(select(JobMetric.id).where(JobMetric.job_id == job_id)) is None
        assert s.scalar(select(Artifact.id).where(Artifact.job_id == job_id)) is None
    assert [t for _, t in _events(factory, job_id)] == ["started", "started"]
    # The current holder's writes go through.
    with session_scope(factory) as s:
        assert leases.record_progress(s, new, step=5, total_steps=10, percent=50.0, eta_seconds=1.0)
    assert _job(factory, job_id).step == 5


def test_metrics_replace_redone_steps_and_finish_releases_lease(factory, make_job):
    job_id = make_job()
    lease = _claim(factory, job_id)
    with session_scope(factory) as s:
        assert leases.record_metrics(s, lease, [(1, {"loss": 0.9}), (2, {"loss": 0.8})])
    with session_scope(factory) as s:
        assert leases.record_metrics(s, lease, [(2, {"loss": 0.7}), (3, {"loss": 0.6})])
    with session_scope(factory) as s:
        rows = s.execute(
            select(JobMetric.step, JobMetric.values)
            .where(JobMetric.job_id == job_id)
            .order_by(JobMetric.step)
        ).all()
        assert [(st, v["loss"]) for st, v in rows] == [(1, 0.9), (2, 0.7), (3, 0.6)]
        assert leases.finish_job(s, lease, "succeeded")
    job = _job(factory, job_id)
    assert job.status == "succeeded" and job.lease_token is None and job.percent == 100.0
    assert _claim(factory, job_id, "w2") is None  # a finished job is never run again


def test_heartbeat_sees_cancel_request(factory, make_job):
    job_id = make_job()
    lease = _claim(factory, job_id)
    with session_scope(factory) as s:
        state = leases.renew_lease(s, lease, 60)
    assert state is not None and not state.cancel_requested
    _request_cancel(factory, job_id)
    with session_scope(factory) as s:
        state = leases.renew_lease(s, lease, 60)
        assert state is not None and state.cancel_requested
        assert leases.finish_job(s, lease, "cancelled")
    assert _job(factory, job_id).status == "cancelled"


def test_reaper_requeues_then_fails_at_attempt_cap(factory, make_job):
    job_id = make_job(max_attempts=2)
    for attempt in (1, 2):
        lease = _claim(factory, job_id, f"w{attempt}")
        assert lease is not None and lease.attempt == attempt
        _expire(factory, job_id)
        with session_scope(factory) as s:
            reaped = {r.job_id: r for r in leases.reap_expired(s)}
        assert reaped[job_id].outcome == ("requeued" if attempt == 1 else "failed")
    job = _job(factory, job_id)
    assert job.status == "failed" and job.attempt == 2 and job.lease_token is None
    assert job.error["code"] == "worker_lost" and job.error["type"] == "system_error"
    types = [t for _, t in _events(factory, job_id)]
    assert types == ["started", "lease_expired", "started", "failed"]
    assert _claim(factory, job_id, "w3") is None


def test_reaper_leaves_live_leases_and_cancels_orphaned_cancelling(factory, make_job):
    live = make_job()
    cancelling = make_job()
    _claim(factory, live)
    _claim(factory, cancelling)
    _request_cancel(factory, cancelling)
    _expire(factory, cancelling)
    with session_scope(factory) as s:
        reaped = {r.job_id: r.outcome for r in leases.reap_expired(s)}
    assert live not in reaped and reaped[cancelling] == "cancelled"
    assert _job(factory, live).status == "running"
    assert _job(factory, cancelling).status == "cancelled"


def test_unknown_job_is_not_claimable(factory):
    assert _claim(factory, uuid.uuid4()) is None


def test_release_refunds_the_attempt_but_never_undoes_a_cancel(factory, make_job):
    job_id = make_job()
    lease = _claim(factory, job_id)
    with session_scope(factory) as s:
        assert leases.release_job(s, lease, "shutting down")
    job = _job(factory, job_id)
    assert job.status == "queued" and job.attempt == 0 and job.lease_token is None
    assert [t for _, t in _events(factory, job_id)] == ["started", "released"]

    lease = _claim(factory, job_id)
    _request_cancel(factory, job_id)
    with session_scope(factory) as s:
        assert not leases.release_job(s, lease, "shutting down")
    assert _job(factory, job_id).status == "cancelling"


def test_frozen_worker_transaction_cannot_hide_an_expired_lease(pg_url, factory, make_job):
    """A worker frozen inside a transaction holds its job row's lock; the reaper skips locked
    rows, so without the worker engine's idle-in-transaction timeout it never requeued the job
    (the paused-worker reliability test timed out on exactly this in CI)."""
    from persistence.db import make_engine, make_session_factory

    job_id = make_job()
    _claim(factory, job_id)
    _expire(factory, job_id)
    worker_engine = make_engine(pg_url, idle_in_transaction_timeout_s=0.5)
    frozen = make_session_factory(worker_engine)()
    try:
        frozen.execute(select(Job.id).where(Job.id == job_id).with_for_update())  # then idle
        with session_scope(factory) as s:
            assert leases.reap_expired(s) == []  # the locked row is skipped
        deadline = time.monotonic() + 10
        reaped: list = []
        while not reaped and time.monotonic() < deadline:
            time.sleep(0.2)
            with session_scope(factory) as s:
                reaped = [r for r in leases.reap_expired(s) if r.job_id == job_id]
        assert [r.outcome for r in reaped] == ["requeued"]
        assert _job(factory, job_id).status == "queued"
        # Thawed, the worker's next statement fails as a lost connection (which the worker
        # retries, then finds its lease gone), not as an error that would fail the job.
        with pytest.raises(DBAPIError) as failed:
            frozen.execute(select(Job.status).where(Job.id == job_id))
        assert failed.value.connection_invalidated
    finally:
        frozen.close()
        worker_engine.dispose()
