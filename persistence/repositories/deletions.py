"""Deleting finished jobs and artifacts: the rows go in the caller's transaction, and the
caller deletes the returned store keys once that transaction has committed (a rollback then
leaves rows and bytes as they were; a failed byte delete only leaves an orphan file)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from persistence.models import TERMINAL_STATUSES, Artifact, DeletedJob, Job
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo


def delete_job(session: Session, job: Job) -> list[str]:
    """Remove a finished job with its events, metrics and artifact rows (ON DELETE CASCADE),
    leaving a DeletedJob record; returns the store keys of its artifacts."""
    if job.status not in TERMINAL_STATUSES:
        raise ValueError(f"job {job.id} is {job.status}; only finished jobs are deleted")
    artifacts = artifacts_repo.list_artifacts(session, job.id)
    session.add(
        DeletedJob(
            id=job.id,
            tenant_id=job.tenant_id,
            status=job.status,
            base_model=job.base_model,
            target_language=job.target_language,
            method=job.method,
            data_size=job.data_size,
            error_code=(job.error or {}).get("code"),
            artifacts_deleted=len(artifacts),
            bytes_freed=sum(a.size for a in artifacts),
            created_at=job.created_at,
            finished_at=job.finished_at,
        )
    )
    session.execute(delete(Job).where(Job.id == job.id))
    session.expunge(job)
    session.flush()
    return [a.key for a in artifacts]


def delete_artifact(session: Session, artifact: Artifact, reason: str) -> str:
    """Remove one artifact row, noted in its job's events; returns its store key."""
    key = artifact.key
    events_repo.append_event(
        session,
        artifact.job_id,
        "artifact_deleted",
        f"artifact {artifact.name} deleted ({reason})",
        {"name": artifact.name, "size": artifact.size, "reason": reason},
    )
    session.delete(artifact)
    session.flush()
    return key


def expired_artifacts(session: Session, finished_before: datetime, limit: int) -> list[Artifact]:
    """Artifacts of jobs that finished before `finished_before`, oldest first, locked so two
    retention passes do not delete the same rows."""
    query = (
        select(Artifact)
        .join(Job, Job.id == Artifact.job_id)
        .where(Job.status.in_(TERMINAL_STATUSES), Job.finished_at < finished_before)
        .order_by(Job.finished_at, Artifact.id)
        .limit(limit)
        .with_for_update(of=Artifact, skip_locked=True)
    )
    return list(session.scalars(query))
