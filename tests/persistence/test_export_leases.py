"""Export leases against the real Postgres: one claim wins, a stale token changes nothing, an
expired lease is claimed again up to the attempt cap, and past it the export fails."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update

from persistence.db import session_scope
from persistence.models import JobExport, utcnow
from persistence.repositories import exports as exports_repo


def _export(factory, make_job) -> uuid.UUID:  # type: ignore[no-untyped-def]
    job_id = make_job(status="succeeded")
    with session_scope(factory) as s:
        row = exports_repo.create_export(
            s, job_id, format="lora", options={"rank": 4, "dtype": "trained"},
            request_hash=uuid.uuid4().hex, artifact_name="lora-r4-trained.tar",
        )  # fmt: skip
        return row.id


def _claim(factory, export_id, lease_seconds=60):  # type: ignore[no-untyped-def]
    with session_scope(factory) as s:
        return exports_repo.claim_export(s, export_id, "w", lease_seconds)


def _row(factory, export_id) -> JobExport:  # type: ignore[no-untyped-def]
    with session_scope(factory) as s:
        row = s.get(JobExport, export_id)
        assert row is not None
        s.expunge(row)
        return row


def _expire(factory, export_id) -> None:  # type: ignore[no-untyped-def]
    with session_scope(factory) as s:
        s.execute(
            update(JobExport)
            .where(JobExport.id == export_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def test_one_claim_wins_and_a_stale_token_changes_nothing(factory, make_job) -> None:  # type: ignore[no-untyped-def]
    export_id = _export(factory, make_job)
    first = _claim(factory, export_id)
    assert first is not None and first.attempt == 1
    assert _claim(factory, export_id) is None  # held: a duplicate wake-up is a no-op
    _expire(factory, export_id)
    second = _claim(factory, export_id)
    assert second is not None and second.attempt == 2 and second.token != first.token
    with session_scope(factory) as s:
        assert not exports_repo.renew_export(s, first, 60)
        assert not exports_repo.finish_export(s, first, "succeeded", report={"rank": 4})
    with session_scope(factory) as s:
        assert exports_repo.finish_export(s, second, "succeeded", report={"rank": 4})
    row = _row(factory, export_id)
    assert (row.status, row.report, row.lease_token) == ("succeeded", {"rank": 4}, None)
    assert _claim(factory, export_id) is None  # finished


def test_past_the_attempt_cap_an_expired_export_fails(factory, make_job) -> None:  # type: ignore[no-untyped-def]
    export_id = _export(factory, make_job)
    for _ in range(3):  # max_attempts
        assert _claim(factory, export_id) is not None
        _expire(factory, export_id)
    assert _claim(factory, export_id) is None
    row = _row(factory, export_id)
    assert row.status == "failed" and row.error is not None
    assert row.error["code"] == "worker_lost" and row.finished_at is not None


def test_stalled_exports_are_the_ones_whose_wake_up_may_be_lost(factory, make_job) -> None:  # type: ignore[no-untyped-def]
    queued, running, done = (_export(factory, make_job) for _ in range(3))
    assert not {queued, running, done} & set(_stalled(factory))  # all fresh
    old = utcnow() - timedelta(minutes=20)
    with session_scope(factory) as s:
        s.execute(update(JobExport).where(JobExport.id.in_([queued, running, done]))
                  .values(created_at=old, enqueued_at=old))  # fmt: skip
    lease = _claim(factory, running)
    with session_scope(factory) as s:
        assert exports_repo.finish_export(s, _claim(factory, done), "succeeded")
    assert {queued, running} & set(_stalled(factory)) == {queued}  # running: lease is live
    _expire(factory, running)
    assert {queued, running, done} & set(_stalled(factory)) == {queued, running}
    with session_scope(factory) as s:
        exports_repo.mark_enqueued(s, queued)
    assert queued not in _stalled(factory)  # just re-sent
    assert lease is not None


def _stalled(factory):  # type: ignore[no-untyped-def]
    with session_scope(factory) as s:
        return exports_repo.stalled_exports(s, older_than_seconds=600)
