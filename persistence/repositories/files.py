"""Uploaded seed files."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from persistence.models import UploadedFile


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
