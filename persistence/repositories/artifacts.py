"""Artifact rows: finished files in the artifact store with their checksums."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from persistence.artifact_store import StoredObject
from persistence.models import ARTIFACT_KINDS, Artifact, utcnow


def add_artifact(
    session: Session, job_id: uuid.UUID, name: str, kind: str, stored: StoredObject
) -> Artifact:
    """Record a stored file; re-packaging after a resume replaces the row of the same name.

    The one writer of artifact rows: the worker's fenced write and the tests' builders use it.
    """
    if kind not in ARTIFACT_KINDS:
        raise ValueError(f"artifact kind must be one of {ARTIFACT_KINDS}, not {kind!r}")
    row = get_artifact(session, job_id, name)
    if row is None:
        row = Artifact(job_id=job_id, name=name)
        session.add(row)
    row.kind, row.key, row.size, row.sha256 = kind, stored.key, stored.size, stored.sha256
    row.created_at = utcnow()
    session.flush()
    return row


def list_artifacts(session: Session, job_id: uuid.UUID) -> list[Artifact]:
    query = select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.name)
    return list(session.scalars(query))


def artifacts_by_job(
    session: Session, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Artifact]]:
    """Every listed job's artifacts by name, in one query (jobs without any are absent)."""
    found: dict[uuid.UUID, list[Artifact]] = {}
    if job_ids:
        query = select(Artifact).where(Artifact.job_id.in_(job_ids)).order_by(Artifact.name)
        for artifact in session.scalars(query):
            found.setdefault(artifact.job_id, []).append(artifact)
    return found


def get_artifact(session: Session, job_id: uuid.UUID, name: str) -> Artifact | None:
    query = select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name)
    return session.scalars(query).one_or_none()
