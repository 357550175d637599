"""An export's end is fenced: a job deleted while its export ran gets no artifact and the
bytes just stored are removed; a worker whose export lease was taken over registers nothing;
a job whose adapter is gone fails the export with a code, not a crash."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from persistence.artifact_store import ArtifactStore
from persistence.db import session_scope
from persistence.models import Job, JobExport
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import deletions
from persistence.repositories import exports as exports_repo
from persistence.repositories.exports import ExportLease
from tests.worker.conftest import in_process_settings
from worker.config import WorkerSettings
from worker.exports import _finish_succeeded, run_export


def _claimed(factory: sessionmaker[Session], make_job) -> ExportLease:  # type: ignore[no-untyped-def]
    job_id = make_job(status="succeeded")
    with session_scope(factory) as s:
        row = exports_repo.create_export(
            s, job_id, format="lora", options={"rank": 4, "dtype": "trained"},
            request_hash=uuid.uuid4().hex, artifact_name="lora-r4-trained.tar",
        )  # fmt: skip
        lease = exports_repo.claim_export(s, row.id, "w", 60)
    assert lease is not None
    return lease


def _stored(store: ArtifactStore, lease: ExportLease, tmp_path: Path):  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    out.mkdir()
    (out / "adapter_config.json").write_text("{}")
    return store.write_dir_archive(f"jobs/{lease.job_id}/lora-r4-trained.tar", out)


def test_a_job_deleted_during_its_export_keeps_no_artifact(
    factory: sessionmaker[Session], make_job, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    store = ArtifactStore(tmp_path / "store")
    lease = _claimed(factory, make_job)
    stored = _stored(store, lease, tmp_path)
    with session_scope(factory) as s:
        job = s.get(Job, lease.job_id)
        assert job is not None
        deletions.delete_job(s, job)
    outcome = _finish_succeeded(factory, store, lease, "lora-r4-trained.tar", "adapter", stored, {})
    assert outcome == "lease_lost"
    assert not store.exists(stored.key)
    with session_scope(factory) as s:
        assert s.get(JobExport, lease.export_id) is None  # gone with its job


def test_a_taken_over_export_registers_nothing(
    factory: sessionmaker[Session], make_job, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    store = ArtifactStore(tmp_path / "store")
    lease = _claimed(factory, make_job)
    stale = ExportLease(lease.export_id, lease.job_id, uuid.uuid4(), lease.attempt)
    stored = _stored(store, lease, tmp_path)
    outcome = _finish_succeeded(factory, store, stale, "lora-r4-trained.tar", "adapter", stored, {})
    assert outcome == "lease_lost"
    with session_scope(factory) as s:
        assert artifacts_repo.list_artifacts(s, lease.job_id) == []
        row = s.get(JobExport, lease.export_id)
        assert row is not None and row.status == "running"  # still the live holder's
    assert _finish_succeeded(factory, store, lease, "lora-r4-trained.tar", "adapter", stored,
                             {"rank": 4}) == "succeeded"  # fmt: skip
    with session_scope(factory) as s:
        names = [a.name for a in artifacts_repo.list_artifacts(s, lease.job_id)]
        assert names == ["lora-r4-trained.tar"]


def test_an_export_of_a_job_without_its_adapter_fails_with_a_code(
    factory: sessionmaker[Session], make_job, pg_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    job_id = make_job(status="succeeded")
    with session_scope(factory) as s:
        row = exports_repo.create_export(
            s, job_id, format="merged", options={"dtype": "bf16"},
            request_hash=uuid.uuid4().hex, artifact_name="merged-bf16.tar",
        )  # fmt: skip
        export_id = row.id
    run = dict(
        settings=in_process_settings(pg_url, tmp_path),
        wsettings=WorkerSettings(work_dir=tmp_path / "work"),
        factory=factory,
    )
    assert run_export(str(export_id), **run) == "failed"  # type: ignore[arg-type]
    assert run_export(str(export_id), **run) == "not_claimable"  # type: ignore[arg-type]
    with session_scope(factory) as s:
        failed = s.get(JobExport, export_id)
        assert failed is not None and failed.error is not None
        assert (failed.status, failed.error["code"]) == ("failed", "export_source_missing")
    assert not (tmp_path / "work" / "exports" / str(export_id)).exists()  # scratch removed
