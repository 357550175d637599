"""Server-sent events for one job: replays from Last-Event-ID, then follows until terminal."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.errors import InvalidRequest
from api.jobs.service import event_read
from persistence.models import TERMINAL_STATUSES
from persistence.repositories import events as events_repo
from persistence.repositories import jobs as jobs_repo

KEEPALIVE_SECONDS = 15.0
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
    factory: sessionmaker[Session], job_id: uuid.UUID, after: int
) -> tuple[list[str], int, bool]:
    """New events as SSE frames, the last id sent, and whether the job is over."""
    with factory() as session:
        # Read the status before the events: a job seen terminal has all its events committed.
        job = jobs_repo.get_job(session, job_id)
        terminal = job is None or job.status in TERMINAL_STATUSES
        rows = events_repo.list_events(session, job_id, after=after, limit=500)
    frames = []
    for row in rows:
        payload = event_read(row).model_dump(mode="json")
        frames.append(f"id: {row.seq}\nevent: {row.type}\ndata: {json.dumps(payload)}\n\n")
        after = row.seq
    return frames, after, terminal and len(rows) < 500


async def event_stream(
    request: Request, factory: sessionmaker[Session], job_id: uuid.UUID, after: int, poll: float
) -> AsyncIterator[str]:
    """Polls the database (no session held between polls) and yields SSE frames."""
    yield "retry: 2000\n\n"
    idle = 0.0
    while True:
        frames, after, done = await run_in_threadpool(_poll, factory, job_id, after)
        for frame in frames:
            yield frame
        if done:
            yield "event: end\ndata: {}\n\n"
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
