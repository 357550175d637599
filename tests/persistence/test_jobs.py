"""The jobs repository against the real Postgres: queue positions and wake-up bookkeeping."""

from __future__ import annotations

from datetime import timedelta

from persistence.db import session_scope
from persistence.models import utcnow
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import tenants as tenants_repo


def test_queued_without_message_finds_old_unsent_jobs(factory, make_job):
    old = make_job(created_at=utcnow() - timedelta(minutes=10), enqueued_at=None)
    fresh = make_job()
    recently_sent = make_job(created_at=utcnow() - timedelta(minutes=10), enqueued_at=utcnow())
    with session_scope(factory) as s:
        found = set(jobs_repo.queued_without_message(s, older_than_seconds=60, limit=1000))
        assert old in found and fresh not in found and recently_sent not in found
        jobs_repo.mark_enqueued(s, [old])
    with session_scope(factory) as s:
        assert old not in set(jobs_repo.queued_without_message(s, 60, limit=1000))


def test_mark_enqueued_leaves_jobs_no_longer_queued(factory, make_job, load_job):
    queued, running = make_job(), make_job(status="running")
    with session_scope(factory) as s:
        jobs_repo.mark_enqueued(s, [queued, running])
        jobs_repo.mark_enqueued(s, [])  # nothing sent: nothing to record
    assert load_job(queued).enqueued_at is not None
    assert load_job(running).enqueued_at is None


def test_list_and_keyed_read_give_the_same_queue_position(factory, make_job):
    with session_scope(factory) as s:
        tenant = tenants_repo.create_tenant(s, "queue-positions")
        _, key = tenants_repo.create_api_key(s, tenant)
        tenant_id = tenant.id
    base = utcnow() - timedelta(hours=1)
    ids = [
        make_job(tenant_id=tenant_id, created_at=base + timedelta(seconds=i), status=status)
        for i, status in enumerate(["queued", "running", "queued", "succeeded"])
    ]
    with session_scope(factory) as s:
        jobs = [jobs_repo.get_job(s, job_id) for job_id in ids]
        listed = jobs_repo.queue_positions(s, jobs)
        keyed = {}
        for job_id in ids:
            read = jobs_repo.read_job_for_key(s.connection(), key.secret, job_id)
            assert read is not None and read.job is not None
            keyed[job_id] = read.job.queue_position
    assert set(listed) == {ids[0], ids[2]}  # only queued jobs have a position
    assert listed[ids[2]] == listed[ids[0]] + 1
    assert keyed == {job_id: listed.get(job_id) for job_id in ids}
