"""Comparison rows: a named group of jobs trained on the same data by different methods."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from persistence.models import Comparison, Job


def create_comparison(
    session: Session,
    *,
    comparison_id: uuid.UUID,
    tenant_id: uuid.UUID,
    name: str | None,
    runs: list[dict[str, Any]],
    request: dict[str, Any],
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> Comparison:
    row = Comparison(
        id=comparison_id,
        tenant_id=tenant_id,
        name=name,
        runs=runs,
        request=request,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    session.add(row)
    session.flush()
    return row


def get_comparison_for_tenant(
    session: Session, tenant_id: uuid.UUID, comparison_id: uuid.UUID
) -> Comparison | None:
    """The comparison if it belongs to the tenant; another tenant's looks like none."""
    query = select(Comparison).where(
        Comparison.id == comparison_id, Comparison.tenant_id == tenant_id
    )
    return session.scalars(query).one_or_none()


def get_comparison_by_idempotency_key(
    session: Session, tenant_id: uuid.UUID, key: str
) -> Comparison | None:
    query = select(Comparison).where(
        Comparison.tenant_id == tenant_id, Comparison.idempotency_key == key
    )
    return session.scalars(query).one_or_none()


def list_comparisons(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[Comparison]:
    """Newest first; `before` is the (created_at, id) of the last row of the previous page."""
    query = select(Comparison).where(Comparison.tenant_id == tenant_id)
    if before is not None:
        created, last_id = before
        query = query.where(
            or_(
                Comparison.created_at < created,
                and_(Comparison.created_at == created, Comparison.id < last_id),
            )
        )
    query = query.order_by(Comparison.created_at.desc(), Comparison.id.desc()).limit(limit)
    return list(session.scalars(query))


def jobs_of(
    session: Session, tenant_id: uuid.UUID, job_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Job]:
    """The tenant's jobs among job_ids, by id (one query for a whole comparison)."""
    if not job_ids:
        return {}
    query = select(Job).where(Job.tenant_id == tenant_id, Job.id.in_(job_ids))
    return {job.id: job for job in session.scalars(query)}
