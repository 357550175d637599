"""Artifact retention: artifacts of jobs finished more than CLO_ARTIFACT_RETENTION_DAYS ago
lose their rows and bytes; newer ones and active jobs keep theirs. Run as a function and by
the dispatcher process (`python -m service.dispatcher --once`)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from persistence.artifact_store import ArtifactStore, make_key
from persistence.db import session_scope
from persistence.models import Artifact, Job, utcnow
from persistence.repositories import artifacts as artifacts_repo
from service.retention import remove_expired_artifacts
from service_cli.processes import repo_root
from tests.api.conftest import make_settings


def _job_with_artifact(  # type: ignore[no-untyped-def]
    insert_job, tenant, factory, store: ArtifactStore, status: str, finished_days_ago: float | None
) -> tuple[uuid.UUID, Path]:
    finished = None if finished_days_ago is None else utcnow() - timedelta(days=finished_days_ago)
    job_id = insert_job(tenant, status=status, finished_at=finished)
    stored = store.write_bytes(make_key("jobs", str(job_id), "adapter.tar"), os.urandom(10_000))
    with session_scope(factory) as session:
        artifacts_repo.add_artifact(session, job_id, "adapter.tar", "adapter", stored)
    return job_id, store.resolve(stored.key)


def _artifact_names(factory, job_id: uuid.UUID) -> list[str]:  # type: ignore[no-untyped-def]
    with factory() as session:
        return [a.name for a in artifacts_repo.list_artifacts(session, job_id)]


def test_retention_removes_only_old_finished_jobs_artifacts(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory, app, pg_url, data_dir
) -> None:
    store: ArtifactStore = app.state.store
    old, old_path = _job_with_artifact(insert_job, tenant, factory, store, "succeeded", 10)
    old_failed, failed_path = _job_with_artifact(insert_job, tenant, factory, store, "failed", 8)
    recent, recent_path = _job_with_artifact(insert_job, tenant, factory, store, "succeeded", 2)
    # A running job never has finished_at; its artifacts are never touched by retention.
    running, running_path = _job_with_artifact(insert_job, tenant, factory, store, "running", None)

    assert remove_expired_artifacts(factory, make_settings(pg_url, data_dir), store) == 0
    assert old_path.is_file()  # retention unset: nothing goes

    settings = make_settings(pg_url, data_dir, artifact_retention_days=7)
    assert remove_expired_artifacts(factory, settings, store) >= 2
    assert not old_path.exists() and not failed_path.exists()
    assert _artifact_names(factory, old) == [] and _artifact_names(factory, old_failed) == []
    assert recent_path.is_file() and _artifact_names(factory, recent) == ["adapter.tar"]
    assert running_path.is_file() and _artifact_names(factory, running) == ["adapter.tar"]
    # The job itself stays, and says why its artifact went.
    job = client.get(f"/v1/jobs/{old}", headers=tenant.headers).json()
    assert job["status"] == "succeeded" and job["artifacts"] == []
    events = client.get(f"/v1/jobs/{old}/events", headers=tenant.headers).json()["data"]
    assert [e["data"]["reason"] for e in events if e["type"] == "artifact_deleted"] == ["retention"]
    assert remove_expired_artifacts(factory, settings, store) == 0  # nothing left to do


def test_the_dispatcher_process_runs_retention(  # type: ignore[no-untyped-def]
    tenant, insert_job, factory, app, pg_url, data_dir
) -> None:
    store: ArtifactStore = app.state.store
    old, old_path = _job_with_artifact(insert_job, tenant, factory, store, "cancelled", 40)
    recent, recent_path = _job_with_artifact(insert_job, tenant, factory, store, "succeeded", 1)
    env = {
        **os.environ,
        "PYTHONPATH": str(repo_root()),
        "CLO_ENVIRONMENT": "development",
        "CLO_DATABASE_URL": pg_url,
        "CLO_DATA_DIR": str(data_dir),
        "CLO_ARTIFACT_RETENTION_DAYS": "30",
    }
    done = subprocess.run(
        [sys.executable, "-m", "service.dispatcher", "--once"],
        cwd=repo_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not old_path.exists() and _artifact_names(factory, old) == []
    assert recent_path.is_file() and _artifact_names(factory, recent) == ["adapter.tar"]
    with factory() as session:
        assert session.get(Job, old) is not None  # the job row stays
        assert session.query(Artifact).filter(Artifact.job_id == old).count() == 0
