"""Server-sent events for one job: replays from Last-Event-ID, then follows until terminal
(or until the key is revoked, or the server shuts down)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.deps import bearer_secret
from api.errors import InvalidRequest, error_body
from api.jobs.service import event_read
from api.ops.draining import Draining
from persistence.models import TERMINAL_STATUSES
from persistence.repositories import events as events_repo
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import tenants as tenants_repo

KEEPALIVE_SECONDS = 15.0
RETRY_MS = 2000  # reconnect delay after a network drop
SHUTDOWN_RETRY_MS = 500  # after a shutdown: soon, another replica is likely up
# No `end`, so EventSource (and the dashboard) reconnect after the hint and resume.
SHUTDOWN_FRAME = (
    f"retry: {SHUTDOWN_RETRY_MS}\n: server shutting down; reconnect with Last-Event-ID\n\n"
)
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


def _poll(
    factory: sessionmaker[Session], job_id: uuid.UUID, after: int, key_id: uuid.UUID | None
) -> tuple[list[str], int, bool, bool]:
    """New events as SSE frames, the last id sent, whether the job is over, and whether the
    key that opened the stream is still valid (revoking it ends its open streams)."""
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
    frames = []
    for row in rows:
        payload = event_read(row).model_dump(mode="json")
        frames.append(f"id: {row.seq}\nevent: {row.type}\ndata: {json.dumps(payload)}\n\n")
        after = row.seq
    return frames, after, terminal and len(rows) < 500, True


def _key_id(factory: sessionmaker[Session], secret: str) -> uuid.UUID | None:
    with factory() as session:
        return tenants_repo.active_key_id(session, secret)


def _revoked_frame() -> str:
    body = error_body(
        "user_error", "api_key_revoked", "the API key of this stream was revoked", None
    )
    return f"event: error\ndata: {json.dumps(body)}\n\n"


async def event_stream(
    request: Request, factory: sessionmaker[Session], job_id: uuid.UUID, after: int, poll: float
) -> AsyncIterator[str]:
    """Polls the database (no session held between polls) and yields SSE frames.

    Ends at the job's terminal status (`end`), when the key is revoked (`error`), or when the
    server begins shutting down: then with a `retry:` hint and no `end`, so the client
    reconnects (to another replica) with Last-Event-ID and misses nothing.
    """
    draining: Draining = request.app.state.draining
    key_id = await run_in_threadpool(_key_id, factory, bearer_secret(request))
    yield f"retry: {RETRY_MS}\n\n"
    idle = 0.0
    while True:
        frames, after, done, key_valid = await run_in_threadpool(
            _poll, factory, job_id, after, key_id
        )
        if not key_valid:
            yield _revoked_frame()
            return
        for frame in frames:
            yield frame
        if done:
            yield "event: end\ndata: {}\n\n"
            return
        if draining.is_set():
            yield SHUTDOWN_FRAME
            return
        if frames:
            idle = 0.0
        elif idle >= KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"  # comment line: keeps proxies from closing the stream
            idle = 0.0
        if await request.is_disconnected():
            return
        await asyncio.sleep(poll)
        idle += poll
