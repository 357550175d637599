"""Uploaded seed files."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from persistence.models import ACTIVE_STATUSES, Job, UploadedFile


def create_file(
    session: Session,
    *,
    file_id: uuid.UUID,
    tenant_id: uuid.UUID,
    filename: str,
    size: int,
    sha256: str,
    n_examples: int,
    key: str,
) -> UploadedFile:
    row = UploadedFile(
        id=file_id,
        tenant_id=tenant_id,
        filename=filename,
        size=size,
        sha256=sha256,
        n_examples=n_examples,
        key=key,
    )
    session.add(row)
    session.flush()
    return row


def get_file_for_tenant(
    session: Session, tenant_id: uuid.UUID, file_id: uuid.UUID
) -> UploadedFile | None:
    query = select(UploadedFile).where(
        UploadedFile.id == file_id, UploadedFile.tenant_id == tenant_id
    )
    return session.scalars(query).one_or_none()


def get_file(session: Session, file_id: uuid.UUID) -> UploadedFile | None:
    return session.get(UploadedFile, file_id)


def list_files_for_tenant(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    newest_first: bool = True,
    after: UploadedFile | None = None,
) -> list[UploadedFile]:
    """One page of the tenant's files by (created_at, id); `after` is the previous page's last."""
    query = select(UploadedFile).where(UploadedFile.tenant_id == tenant_id)
    if after is not None:
        at, ident = after.created_at, after.id
        if newest_first:
            past = (UploadedFile.created_at < at, UploadedFile.id < ident)
        else:
            past = (UploadedFile.created_at > at, UploadedFile.id > ident)
        query = query.where(or_(past[0], and_(UploadedFile.created_at == at, past[1])))
    if newest_first:
        query = query.order_by(UploadedFile.created_at.desc(), UploadedFile.id.desc())
    else:
        query = query.order_by(UploadedFile.created_at, UploadedFile.id)
    return list(session.scalars(query.limit(limit)))


def active_jobs_using_file(
    session: Session, tenant_id: uuid.UUID, file_id: uuid.UUID
) -> list[uuid.UUID]:
    """Queued, running or cancelling jobs of the tenant whose seed data is this file."""
    used = Job.spec[("seed_data", "file_id")].as_string()
    query = select(Job.id).where(
        Job.tenant_id == tenant_id,
        Job.status.in_(sorted(ACTIVE_STATUSES)),
        used == str(file_id),
    )
    return list(session.scalars(query))


def delete_file(session: Session, row: UploadedFile) -> None:
    session.delete(row)
    session.flush()
