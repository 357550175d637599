"""A per-request deadline: a request not answered in time gets 503 + Retry-After, not a hang.

The database timeouts (pool wait, statement_timeout) bound each step, but a request takes
several; this bounds the whole, from the moment its body has arrived (an upload's transfer
time is the client's) to the start of the response (a stream's body is not timed). A thread
cannot be interrupted, so the late handler runs on in the background and what it sends is
dropped; its connection goes back to the pool when it ends, like any other.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 2
_BODYLESS = {"GET", "HEAD", "DELETE", "OPTIONS"}


class RequestDeadline:
    def __init__(self, app: ASGIApp, seconds: float | None) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.seconds:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        state: dict[str, Any] = {
            "clock_from": loop.time() if scope["method"] in _BODYLESS else None,
            "started": False,
            "abandoned": False,
        }
        started = asyncio.Event()

        async def timed_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                if state["clock_from"] is None:
                    state["clock_from"] = loop.time()
            return message

        async def guarded_send(message: Message) -> None:
            if state["abandoned"]:
                return  # already answered 503: the late handler's response goes nowhere
            if message["type"] == "http.response.start":
                state["started"] = True
                started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, timed_receive, guarded_send))
        waiter = asyncio.ensure_future(started.wait())
        try:
            while True:
                clock_from = state["clock_from"]
                # Until the body is in, check back every second; then wait out the rest.
                timeout = 1.0 if clock_from is None else clock_from + self.seconds - loop.time()
                done, _ = await asyncio.wait(
                    {task, waiter}, timeout=max(0.0, timeout), return_when="FIRST_COMPLETED"
                )
                if done:
                    break
                clock_from = state["clock_from"]
                if clock_from is not None and loop.time() >= clock_from + self.seconds:
                    state["abandoned"] = True  # no await between the check and this flag
                    break
        finally:
            waiter.cancel()
        if not state["abandoned"]:
            await task  # response started or finished: the deadline is no longer ours
            return
        task.add_done_callback(_log_late_failure)
        logger.warning(
            "request deadline of %.0f s exceeded: %s %s",
            self.seconds,
            scope["method"],
            scope["path"],
        )
        await _send_503(send, self.seconds)


async def _send_503(send: Send, seconds: float) -> None:
    body = json.dumps(
        error_body(
            "system_error",
            "request_deadline_exceeded",
            f"the request was not answered within {seconds:g} s; retry shortly",
        )
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_S).encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _log_late_failure(task: asyncio.Future[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.warning("a request answered 503 at its deadline then failed: %r", exc)
