"""run_job in-process: a wake-up without the request id header (one the reaper re-sent) still
logs the creating request's id, found in the job's `queued` event; the worker's counters see
the requeue, the queue wait and the outcome."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from persistence.db import session_scope
from persistence.logs import JsonFormatter
from persistence.repositories import events as events_repo
from tests.worker.conftest import in_process_settings
from worker.config import WorkerSettings
from worker.runner import run_job


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []  # type: ignore[type-arg]

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def log_lines() -> Iterator[list[dict]]:  # type: ignore[type-arg]
    handler, root = _Lines(), logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_resent_wakeup_logs_the_stored_request_id(  # type: ignore[no-untyped-def]
    factory, make_job, pg_url, tmp_path: Path, log_lines
) -> None:
    spec = {"base_model": "no-such-model", "target_language": "de", "data_size": 8}
    job_id = make_job(spec=spec, base_model="no-such-model")
    with session_scope(factory) as session:
        events_repo.append_event(session, job_id, "queued", "accepted", {"request_id": "req-7"})
        events_repo.append_event(session, job_id, "lease_expired", "lease expired on attempt 1")
    before = {
        "failed": _value("clo_worker_job_outcomes_total", outcome="failed"),
        "requeues": _value("clo_worker_requeues_total", reason="lease_expired"),
        "waits": _value("clo_worker_queue_wait_seconds_count"),
    }
    outcome = run_job(
        str(job_id),
        worker_id="w",
        settings=in_process_settings(pg_url, tmp_path),
        wsettings=WorkerSettings(work_dir=tmp_path / "work"),
        factory=factory,
    )
    assert outcome == "failed"  # model_not_allowed: the run itself does not matter here
    about_job = [line for line in log_lines if str(job_id) in line["message"]]
    assert len(about_job) >= 2  # claimed, failed
    assert all(
        line["job_id"] == str(job_id) and line["request_id"] == "req-7" for line in about_job
    )
    assert _value("clo_worker_job_outcomes_total", outcome="failed") == before["failed"] + 1
    assert _value("clo_worker_requeues_total", reason="lease_expired") == before["requeues"] + 1
    assert _value("clo_worker_queue_wait_seconds_count") == before["waits"] + 1
    # Nothing stays bound once the job is over.
    logging.getLogger("worker.runner").info("after the job")
    assert "job_id" not in log_lines[-1] and "request_id" not in log_lines[-1]
