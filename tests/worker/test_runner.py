"""The task body run in-process: duplicate delivery, typed errors, progress throttling."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

from sqlalchemy import func, select

from clo.errors import CloError
from clo.events import StageStarted, StepDone, from_callback
from persistence.db import session_scope
from persistence.models import Job, JobEvent, JobMetric, utcnow
from persistence.repositories import leases
from persistence.settings import Settings
from tests.worker.conftest import in_process_settings
from worker import job_io
from worker.config import WorkerSettings
from worker.lease import HeldLease
from worker.progress import ProgressRecorder
from worker.runner import error_for, run_job


def _settings(pg_url: str, tmp_path: Path) -> tuple[Settings, WorkerSettings]:
    return in_process_settings(pg_url, tmp_path), WorkerSettings(work_dir=tmp_path / "work")


def _snapshot(factory, job_id):
    with session_scope(factory) as s:
        job = s.get(Job, job_id)
        events = s.scalar(
            select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job_id)
        )
        return (job.status, job.lease_token, job.worker_id, job.attempt, job.updated_at, events)


def test_duplicate_delivery_exits_without_touching_the_job(factory, make_job, pg_url, tmp_path):
    job_id = make_job()
    with session_scope(factory) as s:
        assert leases.claim_job(s, job_id, "first-worker", 60) is not None
    before = _snapshot(factory, job_id)
    settings, wsettings = _settings(pg_url, tmp_path)
    outcome = run_job(
        str(job_id),
        worker_id="second-worker",
        settings=settings,
        wsettings=wsettings,
        factory=factory,
    )
    assert outcome == "not_claimable"
    assert _snapshot(factory, job_id) == before
    assert not (tmp_path / "work" / str(job_id)).exists()  # no work started


def test_finished_job_redelivered_is_a_no_op(factory, make_job, pg_url, tmp_path):
    job_id = make_job(status="succeeded")
    before = _snapshot(factory, job_id)
    settings, wsettings = _settings(pg_url, tmp_path)
    assert (
        run_job(str(job_id), worker_id="w", settings=settings, wsettings=wsettings, factory=factory)
        == "not_claimable"
    )
    assert _snapshot(factory, job_id) == before


def test_malformed_job_id_is_ignored(factory, pg_url, tmp_path):
    settings, wsettings = _settings(pg_url, tmp_path)
    assert (
        run_job(
            "not-a-uuid", worker_id="w", settings=settings, wsettings=wsettings, factory=factory
        )
        == "not_claimable"
    )


def test_model_off_the_allow_list_fails_as_user_error(factory, make_job, pg_url, tmp_path):
    spec = {
        "base_model": "no-such-model",
        "target_language": "de",
        "data_size": 8,
        "seed_data": {"source": "parallel"},
    }
    job_id = make_job(spec=spec, base_model="no-such-model")
    settings, wsettings = _settings(pg_url, tmp_path)
    outcome = run_job(
        str(job_id), worker_id="w", settings=settings, wsettings=wsettings, factory=factory
    )
    assert outcome == "failed"
    with session_scope(factory) as s:
        job = s.get(Job, job_id)
        assert job.status == "failed" and job.lease_token is None
        # The worker resolves a row stored without a resolution with the API's own rules.
        assert {k: job.error[k] for k in ("type", "code", "param")} == {
            "type": "user_error",
            "code": "model_not_allowed",
            "param": "base_model",
        }
        assert job.error["message"].startswith(
            "base_model 'no-such-model' is not on the allow-list; allowed: "
        )
        types = s.scalars(
            select(JobEvent.type).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
        ).all()
    assert types == ["started", "failed"]


def test_corrupt_stored_spec_fails_naming_the_field(factory, make_job, pg_url, tmp_path):
    job_id = make_job(spec={"base_model": "x", "target_language": "de", "data_size": 2})
    settings, wsettings = _settings(pg_url, tmp_path)
    assert (
        run_job(str(job_id), worker_id="w", settings=settings, wsettings=wsettings, factory=factory)
        == "failed"
    )
    with session_scope(factory) as s:
        error = s.get(Job, job_id).error
    assert error["type"] == "user_error" and error["code"] == "invalid_spec"
    assert error["param"] == "data_size"


def test_error_mapping_for_system_errors():
    # Issue 15: a system error's text (server paths, hostnames, SQL) never reaches the
    # tenant; the message carries a reference that the worker logs next to the details.
    error = error_for(RuntimeError("/srv/clo/work/j1/ckpt: disk on fire"), reference="ab12cd34ef56")
    assert error == {
        "type": "system_error",
        "code": "internal_error",
        "message": "internal error (reference ab12cd34ef56)",
        "param": None,
    }
    fresh = error_for(RuntimeError("disk on fire"))["message"]
    assert re.fullmatch(r"internal error \(reference [0-9a-f]{12}\)", fresh)


def test_user_error_messages_carry_no_server_paths():
    missing = CloError(
        "seed data file not found: /var/lib/clo/work/0b9e/upload.jsonl",
        code="file_not_found",
        param="seed_data.file_id",
    )
    error = error_for(missing)
    assert error["type"] == "user_error" and error["code"] == "file_not_found"
    assert error["message"] == "seed data file not found: upload.jsonl"
    assert error["param"] == "seed_data.file_id"
    # A model folder is named as the tenant asked for it (the catalogue name).
    unloadable = CloError(
        "cannot load model '/models/tiny-lm' (revision main): OSError: "
        "/models/tiny-lm/config.json is not a file; see https://huggingface.co/docs/x/y"
    )
    message = error_for(unloadable, aliases={"/models/tiny-lm": "tiny-lm"})["message"]
    assert message == (
        "cannot load model 'tiny-lm' (revision main): OSError: "
        "tiny-lm/config.json is not a file; see https://huggingface.co/docs/x/y"
    )
    # Hub ids are not paths and stay as they are.
    hub = error_for(CloError("cannot load model 'facebook/m2m100_1.2B'"))["message"]
    assert hub == "cannot load model 'facebook/m2m100_1.2B'"


def test_failed_job_shows_a_reference_and_the_log_has_the_details(
    factory, make_job, pg_url, tmp_path, monkeypatch, caplog
):
    job_id = make_job()
    settings, wsettings = _settings(pg_url, tmp_path)

    def explode(*_args, **_kwargs):
        raise RuntimeError("cannot write /var/lib/clo/work/abc/ckpt on gpu-node-7: disk on fire")

    monkeypatch.setattr(job_io, "prepare", explode)
    with caplog.at_level(logging.ERROR, logger="worker.runner"):
        outcome = run_job(
            str(job_id), worker_id="w", settings=settings, wsettings=wsettings, factory=factory
        )
    assert outcome == "failed"
    with session_scope(factory) as s:
        error = s.get(Job, job_id).error
        seen = " ".join(
            f"{e.message} {e.data}"
            for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id))
        )
    assert error["type"] == "system_error" and error["code"] == "internal_error"
    match = re.fullmatch(r"internal error \(reference ([0-9a-f]{12})\)", error["message"])
    assert match, error
    for secret in ("/var/lib", "gpu-node-7", "disk on fire", "RuntimeError"):
        assert secret not in seen and secret not in error["message"]
    # Operators find the details by the reference, with the job id and the traceback.
    [record] = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert str(job_id) in record.getMessage() and "disk on fire" in record.getMessage()
    assert record.exc_info is not None


def test_progress_is_throttled_but_every_metric_step_is_kept(factory, make_job):
    job_id = make_job()
    with session_scope(factory) as s:
        lease = leases.claim_job(s, job_id, "w", 60)
    held = HeldLease(lease, factory, 60, 30)
    recorder = ProgressRecorder(held, interval_seconds=3600)  # only stage changes/ends flush
    recorder(StageStarted(stage="training"))
    for step in range(1, 11):
        event = from_callback(
            "training", {"step": step, "total_steps": 20, "loss": 1.0 / step, "phase": "clo"}
        )
        assert event is not None
        recorder(event)
    with session_scope(factory) as s:
        job = s.get(Job, job_id)
        # Step 1 flushed (first write after the long interval); steps 2..10 are pending.
        assert job.stage == "training" and job.step == 1
    recorder(StepDone(stage="training", step=20, total_steps=20, metrics={"loss": 0.01}))  # end
    with session_scope(factory) as s:
        job = s.get(Job, job_id)
        assert job.step == 20 and job.percent == 100.0
        rows = s.execute(
            select(JobMetric.step, JobMetric.values)
            .where(JobMetric.job_id == job_id)
            .order_by(JobMetric.step)
        ).all()
    assert [r[0] for r in rows] == [*range(1, 11), 20]
    assert rows[1][1] == {"loss": 0.5}  # "phase" is not a number: not a metric


def test_held_lease_notices_takeover_and_cancel(factory, make_job):
    job_id = make_job()
    with session_scope(factory) as s:
        lease = leases.claim_job(s, job_id, "w", 60)
    held = HeldLease(lease, factory, 60, 30)
    held.beat()
    assert not held.lost.is_set() and not held.cancel_requested.is_set()
    with session_scope(factory) as s:
        s.get(Job, job_id).cancel_requested_at = utcnow()
    held.beat()
    assert held.cancel_requested.is_set()
    with session_scope(factory) as s:
        s.get(Job, job_id).lease_token = uuid.uuid4()  # someone else holds it now
    assert (
        held.write(leases.record_progress, step=1, total_steps=2, percent=50.0, eta_seconds=None)
        is False
    )
    assert held.lost.is_set()
