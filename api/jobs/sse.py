"""Server-sent events for one job: replays from Last-Event-ID, then follows until terminal
(or until the key is revoked, or the server shuts down).

The framing is FastAPI's own (`fastapi.sse`): the route declares `EventSourceResponse` and
yields `ServerSentEvent`s; FastAPI writes the `id:`/`event:`/`data:`/`retry:` lines, the
no-cache and no-buffering headers, and a `: ping` comment whenever 15 s pass without an
event (what our own keep-alive did). What stays here is what FastAPI cannot know: where the
stream resumes, when it ends, and what it says when it ends.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.sse import ServerSentEvent, format_sse_event
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentJob, bearer_secret
from api.errors import InvalidRequest, error_body
from api.jobs.service import event_read
from api.ops.draining import Draining
from persistence.models import TERMINAL_STATUSES
from persistence.repositories import events as events_repo
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import tenants as tenants_repo

RETRY_MS = 2000  # reconnect delay after a network drop
SHUTDOWN_RETRY_MS = 500  # after a shutdown: soon, another replica is likely up
# No `end`, so EventSource (and the dashboard) reconnect after the hint and resume.
SHUTDOWN_EVENT = ServerSentEvent(
    retry=SHUTDOWN_RETRY_MS, comment="server shutting down; reconnect with Last-Event-ID"
)
SHUTDOWN_FRAME = format_sse_event(
    retry=SHUTDOWN_EVENT.retry, comment=SHUTDOWN_EVENT.comment
).decode()
END_EVENT = ServerSentEvent(event="end", raw_data="{}")
MAX_EVENT_ID = 2**31 - 1  # job_events.seq is a 32-bit integer column


def parse_last_event_id(value: str | None) -> int | None:
    """The seq a reconnecting client last saw, or None without the header.

    ASCII digits only: `str.isdigit()` also accepts "²", which `int()` refuses (a 500), and an
    id past 32 bits overflowed the query mid-stream. Both are 422s naming the header; the
    ids this stream sends are always plain seqs, so a client never sends one legitimately.
    """
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_EVENT_ID:
        raise InvalidRequest(
            f"Last-Event-ID must be an event id from this stream (0 to {MAX_EVENT_ID})",
            code="invalid_last_event_id",
            param="Last-Event-ID",
        )
    return int(value)


@dataclass(frozen=True)
class StreamStart:
    """Which job's stream, resuming after which seq."""

    job_id: uuid.UUID
    after: int


def stream_start(
    job: CurrentJob,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_ID)] = 0,
) -> StreamStart:
    """Checked as a dependency, before the response starts: a generator endpoint's own body
    runs only once the 200 is on its way, too late for a 404 or a 422."""
    resumed = parse_last_event_id(last_event_id)
    return StreamStart(job.id, after if resumed is None else resumed)


StreamFrom = Annotated[StreamStart, Depends(stream_start)]


def _poll(
    factory: sessionmaker[Session], job_id: uuid.UUID, after: int, key_id: uuid.UUID | None
) -> tuple[list[ServerSentEvent], int, bool, bool]:
    """New events, the last id sent, whether the job is over, and whether the key that
    opened the stream is still valid (revoking it ends its open streams)."""
    with factory() as session:
        key_valid = (
            key_id is not None and tenants_repo.active_key_tenant(session, key_id) is not None
        )
        if not key_valid:
            return [], after, False, False
        # Read the status before the events: a job seen terminal has all its events committed.
        job = jobs_repo.get_job(session, job_id)
        terminal = job is None or job.status in TERMINAL_STATUSES
        rows = events_repo.list_events(session, job_id, after=after, limit=500)
    events = []
    for row in rows:
        payload = event_read(row).model_dump(mode="json")
        events.append(
            ServerSentEvent(id=str(row.seq), event=row.type, raw_data=json.dumps(payload))
        )
        after = row.seq
    return events, after, terminal and len(rows) < 500, True


def _key_id(factory: sessionmaker[Session], secret: str) -> uuid.UUID | None:
    with factory() as session:
        return tenants_repo.active_key_id(session, secret)


def _revoked_event() -> ServerSentEvent:
    body = error_body(
        "user_error", "api_key_revoked", "the API key of this stream was revoked", None
    )
    return ServerSentEvent(event="error", raw_data=json.dumps(body))


async def event_stream(
    request: Request, factory: sessionmaker[Session], job_id: uuid.UUID, after: int, poll: float
) -> AsyncIterator[ServerSentEvent]:
    """Polls the database (no session held between polls) and yields events.

    Ends at the job's terminal status (`end`), when the key is revoked (`error`), or when the
    server begins shutting down: then with a `retry:` hint and no `end`, so the client
    reconnects (to another replica) with Last-Event-ID and misses nothing.
    """
    draining: Draining = request.app.state.draining
    key_id = await run_in_threadpool(_key_id, factory, bearer_secret(request))
    yield ServerSentEvent(retry=RETRY_MS)
    while True:
        events, after, done, key_valid = await run_in_threadpool(
            _poll, factory, job_id, after, key_id
        )
        if not key_valid:
            yield _revoked_event()
            return
        for event in events:
            yield event
        if done:
            yield END_EVENT
            return
        if draining.is_set():
            yield SHUTDOWN_EVENT
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(poll)
