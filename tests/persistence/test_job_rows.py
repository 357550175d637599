"""The one writer of each job-owned table (events, metrics, artifacts), as API, worker and
test builders all call it."""

from __future__ import annotations

import pytest

from persistence.artifact_store import StoredObject
from persistence.db import session_scope
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo
from persistence.repositories import metrics as metrics_repo


def test_events_are_numbered_per_job(factory, make_job, load_job):
    first, second = make_job(), make_job()
    with session_scope(factory) as s:
        for job_id in (first, second, first):
            events_repo.append_event(s, job_id, "progress", "step", {"n": 1})
    with session_scope(factory) as s:
        assert [e.seq for e in events_repo.list_events(s, first)] == [1, 2]
        assert [e.seq for e in events_repo.list_events(s, first, after=1)] == [2]
        assert [e.seq for e in events_repo.list_events(s, second)] == [1]
    assert load_job(first).event_seq == 2


def test_metrics_keep_numbers_and_the_last_value_of_a_redone_step(factory, make_job):
    job_id = make_job()
    with session_scope(factory) as s:
        metrics_repo.record_metrics(s, job_id, [(1, {"loss": 1.0}), (2, {"loss": 0.9})])
        metrics_repo.record_metrics(s, job_id, [])
    with session_scope(factory) as s:
        rows = [
            (2, {"loss": 0.8, "lr": 1e-5, "nan": float("nan"), "flag": True, "note": "x"}),
            (2, {"loss": 0.7}),  # the same step twice in one batch: the last wins
            (3, {"loss": 0.6}),
        ]
        metrics_repo.record_metrics(s, job_id, rows)
    with session_scope(factory) as s:
        curves = metrics_repo.metric_curves(s, job_id)
    assert curves == {
        "loss": [
            {"step": 1, "value": 1.0},
            {"step": 2, "value": 0.7},
            {"step": 3, "value": 0.6},
        ]
    }


def test_artifact_of_the_same_name_is_replaced_and_kinds_are_checked(factory, make_job):
    job_id = make_job()
    first = StoredObject(key="jobs/j/adapter.tar", size=1, sha256="0" * 64)
    again = StoredObject(key="jobs/j/adapter.tar", size=2, sha256="1" * 64)
    with session_scope(factory) as s:
        artifacts_repo.add_artifact(s, job_id, "adapter.tar", "adapter", first)
    with session_scope(factory) as s:
        artifacts_repo.add_artifact(s, job_id, "adapter.tar", "adapter", again)
        with pytest.raises(ValueError, match="kind"):
            artifacts_repo.add_artifact(s, job_id, "x.bin", "binary", first)
    with session_scope(factory) as s:
        rows = artifacts_repo.list_artifacts(s, job_id)
    assert [(a.name, a.size, a.sha256) for a in rows] == [("adapter.tar", 2, "1" * 64)]
