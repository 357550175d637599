"""The lease's local clock: a holder that has had no renewal confirmed for half a lease (it may
have been paused past it) asks Postgres before it acts again, and stops once it was taken."""

from __future__ import annotations

import time
from datetime import timedelta

from persistence.db import session_scope
from persistence.models import Job, utcnow
from persistence.repositories import leases
from worker.lease import HeldLease

LEASE_SECONDS = 2


def _held(factory, make_job) -> HeldLease:  # noqa: ANN001
    job_id = make_job()
    with session_scope(factory) as session:
        lease = leases.claim_job(session, job_id, "w:1", LEASE_SECONDS)
    assert lease is not None
    # No heartbeat thread (not entered): only the calls below renew.
    return HeldLease(lease, factory, LEASE_SECONDS, heartbeat_seconds=60)


def test_a_quiet_holder_reconfirms_and_carries_on(factory, make_job):
    held = _held(factory, make_job)
    assert not held.may_have_expired() and held.still_held()
    time.sleep(LEASE_SECONDS / 2 + 0.1)
    assert held.may_have_expired()
    assert held.still_held()  # asked Postgres: still ours, renewed
    assert not held.may_have_expired() and not held.lost.is_set()
    with session_scope(factory) as session:
        expires = session.get(Job, held.lease.job_id).lease_expires_at
    assert expires > utcnow() + timedelta(seconds=LEASE_SECONDS / 2)


def test_a_holder_whose_lease_was_taken_stops_and_confirms_nothing(factory, make_job):
    held = _held(factory, make_job)
    with session_scope(factory) as session:  # it "slept" past its lease: another takes over
        session.get(Job, held.lease.job_id).lease_expires_at = utcnow() - timedelta(seconds=1)
    with session_scope(factory) as session:
        assert leases.claim_job(session, held.lease.job_id, "w:2", 60) is not None
    time.sleep(LEASE_SECONDS / 2 + 0.1)
    assert not held.still_held()
    assert held.lost.is_set() and not held.confirm()
