"""The job list and event list read through the caller's API key, on one connection.

GET /v1/jobs and GET /v1/jobs/{id}/events are polled as hard as the status read. Through the
session, tenant and job dependencies each took five thread hops and six round trips (BEGIN,
key, COMMIT, BEGIN, rows, COMMIT), plus ORM instances for rows only read once (issue 15:
120-230 answers/s at 500 concurrent). Here the key is checked by the statement that reads the
rows, as in jobs.read_job_for_key, so a revoked key stops working at once; autocommit, since
each read is one statement (a second, for artifacts, only when a listed job has any).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Integer,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    true,
    type_coerce,
)

from persistence.keys import hash_key
from persistence.models import ApiKey, Artifact, Job, JobEvent, Tenant
from persistence.repositories.jobs import _NOT_SHOWN, JobFilters, _queued_ahead, has_evaluation


@dataclass(frozen=True)
class KeyedRows:
    """The key's tenant and the rows it may see; `rows` empty when there are none."""

    tenant_id: uuid.UUID
    tenant_name: str
    rows: list[Any]


def _key_where() -> Any:
    return and_(
        ApiKey.key_hash == bindparam("key_hash", type_=ApiKey.key_hash.type),
        ApiKey.revoked_at.is_(None),
    )


def _keyed(query: Any) -> Any:
    """`query` (a LATERAL, correlated to the key's tenant) joined under the key's row."""
    return (
        select(ApiKey.tenant_id, Tenant.name.label("tenant_name"), query)
        .select_from(ApiKey)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .outerjoin(query, true())
        .where(_key_where())
    )


def _split(rows: Sequence[Any], present: str) -> KeyedRows | None:
    """None for an unknown or revoked key; the LATERAL's null row (no match) is dropped."""
    if not rows:
        return None
    first = rows[0]
    found = [row for row in rows if getattr(row, present) is not None]
    return KeyedRows(first.tenant_id, first.tenant_name, found)


_JOB_COLUMNS = [c for c in Job.__table__.c if c.name not in _NOT_SHOWN]


def _shown_columns(lateral: bool) -> list[Any]:
    """The job columns a list shows. Of the stored resolution a list shows only its
    language_note, so Postgres sends just that ({"language_note": ...}, what the notes read
    from it) instead of the whole document, which decoding cost a fifth of a list's CPU."""
    if not lateral:  # the embedded database: the whole column
        return _JOB_COLUMNS
    resolved = Job.__table__.c.resolved
    note = func.json_build_object("language_note", resolved.op("->")("language_note"))
    return [type_coerce(note, JSON).label("resolved") if c is resolved else c for c in _JOB_COLUMNS]


def list_jobs_for_key(
    conn: Connection,
    secret: str,
    *,
    limit: int,
    filters: JobFilters,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> KeyedRows | None:
    """A page of the key's tenant's jobs, newest first, as jobs.list_jobs orders and filters
    it; each row has the shown job columns, queue_position (queued only), evaluation_ready
    and has_artifacts. None when the key is unknown or revoked."""
    params: dict[str, Any] = {"key_hash": hash_key(secret), "limit": limit}
    params.update(status=filters.status, target_language=filters.target_language)
    params.update(base_model=filters.base_model)
    if before is not None:
        params.update(before_created=before[0], before_id=before[1])
    lateral = conn.dialect.name != "sqlite"  # the embedded database has no LATERAL
    query = _list_query(
        lateral,
        bool(filters.status),
        bool(filters.target_language),
        bool(filters.base_model),
        before is not None,
    )
    if lateral:
        return _split(conn.execute(query, params).all(), "id")
    found = tenant_for_key(conn, secret)
    if found is None:
        return None
    rows = conn.execute(query, {**params, "tenant_id": found[0]}).all()
    return KeyedRows(found[0], found[1], list(rows))


@lru_cache(maxsize=64)
def _list_query(lateral: bool, status: bool, language: bool, model: bool, before: bool) -> Any:
    """Built once per shape (which filters are set): composing the LATERAL's column proxies
    and the correlated queue count cost more CPU than running the statement."""
    jobs = Job.__table__
    tenant: Any = (
        ApiKey.tenant_id if lateral else bindparam("tenant_id", type_=jobs.c.tenant_id.type)
    )
    page = select(
        *_shown_columns(lateral),
        case((jobs.c.status == "queued", _queued_ahead(jobs) + 1)).label("queue_position"),
        has_evaluation(jobs.c.evaluation).label("evaluation_ready"),
        exists().where(Artifact.__table__.c.job_id == jobs.c.id).label("has_artifacts"),
    ).where(jobs.c.tenant_id == tenant)
    for on, column in ((status, "status"), (language, "target_language"), (model, "base_model")):
        if on:
            page = page.where(jobs.c[column] == bindparam(column, type_=jobs.c[column].type))
    if before:
        created = bindparam("before_created", type_=jobs.c.created_at.type)
        job_id = bindparam("before_id", type_=jobs.c.id.type)
        page = page.where(
            or_(jobs.c.created_at < created, and_(jobs.c.created_at == created, jobs.c.id < job_id))
        )
    page = page.order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
    page = page.limit(bindparam("limit", type_=Integer))
    if not lateral:
        return page
    rows = page.lateral("page")
    return _keyed(rows).order_by(rows.c.created_at.desc(), rows.c.id.desc())


def artifacts_for_jobs(
    conn: Connection, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Any]]:
    """The shown artifact columns of these jobs, by job and name (jobs without any absent)."""
    found: dict[uuid.UUID, list[Any]] = {}
    if not job_ids:
        return found
    a = Artifact.__table__
    query = (
        select(a.c.job_id, a.c.name, a.c.kind, a.c.size, a.c.sha256, a.c.created_at)
        .where(a.c.job_id.in_(list(job_ids)))
        .order_by(a.c.name)
    )
    row: Any
    for row in conn.execute(query).all():
        found.setdefault(row.job_id, []).append(row)
    return found


def tenant_for_key(conn: Connection, secret: str) -> tuple[uuid.UUID, str] | None:
    """(tenant id, name) of an unrevoked key, or None."""
    query = (
        select(ApiKey.tenant_id, Tenant.name)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(_key_where())
    )
    row = conn.execute(query, {"key_hash": hash_key(secret)}).first()
    return (row[0], row[1]) if row is not None else None


@dataclass(frozen=True)
class KeyedEvents:
    tenant_name: str
    job_id: uuid.UUID | None  # None: the key's tenant has no such job
    events: list[Any]


def _events_query() -> Any:
    jobs, events = Job.__table__, JobEvent.__table__
    owned = (
        select(jobs.c.id.label("job_id"))
        .where(
            jobs.c.tenant_id == ApiKey.tenant_id,
            jobs.c.id == bindparam("job_id", type_=jobs.c.id.type),
        )
        .lateral("owned")
    )
    page = (
        select(events.c.seq, events.c.type, events.c.message, events.c.data, events.c.created_at)
        .where(
            events.c.job_id == owned.c.job_id,
            events.c.seq > bindparam("after", type_=Integer),
        )
        .order_by(events.c.seq)
        .limit(bindparam("limit", type_=Integer))
        .lateral("page")
    )
    return (
        select(ApiKey.tenant_id, Tenant.name.label("tenant_name"), owned.c.job_id, page)
        .select_from(ApiKey)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .outerjoin(owned, true())
        .outerjoin(page, true())
        .where(_key_where())
        .order_by(page.c.seq)
    )


_EVENTS = _events_query()


def list_events_for_key(
    conn: Connection, secret: str, job_id: uuid.UUID, *, after: int, limit: int
) -> KeyedEvents | None:
    """The job's events after `after` (seq order, at most `limit`), if the key's tenant owns
    the job; None when the key is unknown or revoked. One statement."""
    params = {"key_hash": hash_key(secret), "job_id": job_id, "after": after, "limit": limit}
    if conn.dialect.name == "sqlite":
        return _events_without_lateral(conn, secret, params)
    rows = conn.execute(_EVENTS, params).all()
    if not rows:
        return None
    first = rows[0]
    events = [row for row in rows if row.seq is not None]
    return KeyedEvents(first.tenant_name, first.job_id, events)


def _events_without_lateral(
    conn: Connection, secret: str, params: dict[str, Any]
) -> KeyedEvents | None:
    """The same answer in three statements, for the embedded database (no LATERAL)."""
    tenant = tenant_for_key(conn, secret)
    if tenant is None:
        return None
    jobs, events = Job.__table__, JobEvent.__table__
    owned = conn.execute(
        select(jobs.c.id).where(jobs.c.tenant_id == tenant[0], jobs.c.id == params["job_id"])
    ).scalar()
    if owned is None:
        return KeyedEvents(tenant[1], None, [])
    page = (
        select(events.c.seq, events.c.type, events.c.message, events.c.data, events.c.created_at)
        .where(events.c.job_id == owned, events.c.seq > params["after"])
        .order_by(events.c.seq)
        .limit(params["limit"])
    )
    return KeyedEvents(tenant[1], owned, list(conn.execute(page).all()))
