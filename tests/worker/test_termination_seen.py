"""The runner hands a job back (attempt refunded) whenever the process is being terminated,
also when the SystemExit surfaced as a database error raised while it unwound."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from persistence.db import session_scope
from persistence.models import Job, JobEvent
from persistence.repositories import events as events_repo
from tests.worker.conftest import in_process_settings
from worker import job_io, runner
from worker.config import WorkerSettings
from worker.runner import _terminating


def _raised_while_handling(first: BaseException, then: Exception) -> Exception:
    try:
        try:
            raise first
        except BaseException:
            raise then  # noqa: B904 - the implicit context is what is under test
    except Exception as exc:  # noqa: BLE001
        return exc


def test_a_database_error_raised_while_exiting_counts_as_termination() -> None:
    rollback_failed = OperationalError("ROLLBACK", {}, Exception("server closed the connection"))
    assert _terminating(_raised_while_handling(SystemExit(241), rollback_failed))
    assert _terminating(_raised_while_handling(KeyboardInterrupt(), ValueError("x")))
    assert _terminating(SystemExit(0))


def test_a_plain_failure_is_not_termination() -> None:
    assert not _terminating(OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert not _terminating(_raised_while_handling(ValueError("a"), RuntimeError("b")))


def _terminated(*_args: object, **_kwargs: object) -> None:
    raise SystemExit(241)  # what billiard's SIGTERM handler raises in a pool process


@pytest.mark.parametrize("where", ["right_after_claim", "inside_the_attempt"])
def test_terminated_anywhere_after_the_claim_hands_the_job_back(  # type: ignore[no-untyped-def]
    where, factory, make_job, pg_url, tmp_path, monkeypatch
):
    """CI hit the first case: the SIGTERM landed between the claim's commit and the attempt's
    own handler, the job was never released, and its expired lease counted an attempt."""
    job_id = make_job()
    if where == "right_after_claim":
        monkeypatch.setattr(runner.metrics, "observe_queue_wait", _terminated)
        with session_scope(factory) as s:  # a queue entry, so the queue wait is observed
            events_repo.append_event(s, job_id, "queued", "queued")
    else:
        monkeypatch.setattr(job_io, "prepare", _terminated)
    settings = in_process_settings(pg_url, tmp_path)
    with pytest.raises(SystemExit):
        runner.run_job(
            str(job_id),
            worker_id="w",
            settings=settings,
            wsettings=WorkerSettings(work_dir=tmp_path / "work"),
            factory=factory,
        )
    with session_scope(factory) as s:
        job = s.get(Job, job_id)
        types = [e.type for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id))]
    assert job.status == "queued" and job.attempt == 0 and job.lease_token is None, job
    assert types.count("released") == 1, types
