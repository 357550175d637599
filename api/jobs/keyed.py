"""GET /v1/jobs and GET /v1/jobs/{id}/events in one thread hop on one autocommit connection.

Same answers as the session-based reads (service.list_jobs, service.list_events) and the
same checks in the same order: 401 for an unknown or revoked key, then 404 for a job the
key's tenant does not own, then 422 for a cursor this API did not sign. See
persistence/repositories/keyed_reads.py for why (issue 15, bench/RESULTS.md).
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection

from api.artifacts.service import artifact_read
from api.deps import invalid_key
from api.errors import InvalidRequest, NotFound
from api.jobs.schemas import EventList, JobList
from api.jobs.service import _job_read, event_read
from api.pagination import CursorCodec
from persistence.repositories import keyed_reads
from persistence.repositories.jobs import JobFilters
from service.catalog import as_uuid

# Stands in for a malformed id, so the key is still checked (401 before 404, as elsewhere).
_NO_SUCH_ID = uuid.UUID(int=0)


def list_jobs(
    conn: Connection,
    secret: str,
    *,
    limit: int,
    cursor: str | None,
    filters: JobFilters,
    cursors: CursorCodec,
) -> tuple[str, JobList]:
    """(tenant name, a page of its jobs)."""
    try:
        before = cursors.decode(cursor) if cursor else None
    except InvalidRequest:
        if keyed_reads.tenant_for_key(conn, secret) is None:
            raise invalid_key() from None  # the key is checked first, as with a session
        raise
    found = keyed_reads.list_jobs_for_key(
        conn, secret, limit=limit + 1, filters=filters, before=before
    )
    if found is None:
        raise invalid_key()
    page, has_more = found.rows[:limit], len(found.rows) > limit
    artifacts = keyed_reads.artifacts_for_jobs(conn, [row.id for row in page if row.has_artifacts])
    data = [
        _job_read(
            row,
            [
                artifact_read(a.job_id, a.name, a.kind, a.size, a.sha256, a.created_at)
                for a in artifacts.get(row.id, [])
            ],
            row.queue_position,
            evaluation_ready=bool(row.evaluation_ready),
        )
        for row in page
    ]
    next_cursor = cursors.encode(page[-1]) if has_more and page else None
    return found.tenant_name, JobList(data=data, next_cursor=next_cursor, has_more=has_more)


def list_events(
    conn: Connection, secret: str, job_id: str, *, after: int, limit: int
) -> tuple[str, str, EventList]:
    """(tenant name, job id, the job's events after `after`)."""
    found = keyed_reads.list_events_for_key(
        conn, secret, as_uuid(job_id) or _NO_SUCH_ID, after=after, limit=limit
    )
    if found is None:
        raise invalid_key()
    if found.job_id is None:
        raise NotFound(f"job {job_id!r} not found", code="job_not_found")
    rows = found.events
    events = EventList(
        data=[event_read(e) for e in rows],  # type: ignore[arg-type]  # a row with its columns
        last_id=rows[-1].seq if rows else after,
    )
    return found.tenant_name, str(found.job_id), events
