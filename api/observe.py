"""Per-request observation as a plain ASGI middleware: size limit, request id, metrics, log line.

Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs every
request through an extra task and memory streams, which cost about a third of the CPU of a
`GET /v1/jobs/{id}` under polling load (bench/bench_api_load.py).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import BodyTooLarge, error_body
from api.logs import job_id_var, request_id_var
from persistence.logs import valid_request_id

logger = logging.getLogger("api.app")

_JOB_PATH = re.compile(r"^/v1/jobs/([0-9a-fA-F-]{36})")
_UPLOAD_PATH = "/v1/files"  # streams its own body with its own limit


class ObserveRequests:
    """Rejects bodies over `max_request_bytes` (declared or as received), tags logs with
    request and job ids, counts and times each request by route, and writes one log line
    per request."""

    def __init__(self, app: ASGIApp, *, metrics: Any, max_request_bytes: int):
        self.app = app
        self.metrics = metrics
        self.max_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        match = _JOB_PATH.match(path)
        job_token = job_id_var.set(match.group(1) if match else None)
        # A client's own id is kept when it is short and printable: it goes on into log lines,
        # the job's events and the worker's queue message.
        request_id = valid_request_id(headers.get("x-request-id")) or uuid.uuid4().hex[:16]
        request_token = request_id_var.set(request_id)
        status = 500  # what is recorded if the app raises before sending a response

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-Id"] = request_id
            await send(message)

        started = time.perf_counter()
        try:
            declared = headers.get("content-length", "")
            if path == _UPLOAD_PATH:
                await self.app(scope, receive, send_with_id)
            elif declared.isdigit() and int(declared) > self.max_bytes:
                reason = f"request body over {self.max_bytes} bytes"
                body = error_body("user_error", "request_too_large", reason)
                await JSONResponse(body, status_code=413)(scope, receive, send_with_id)
            else:
                # A chunked body declares no length: count what actually arrives.
                await self.app(scope, self._limited(receive), send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            job_id_var.reset(job_token)
            request_id_var.reset(request_token)

    def _limited(self, receive: Receive) -> Receive:
        """`receive` that raises BodyTooLarge (a 413) once the body passes the limit, so a
        chunked body is refused after max_bytes + one chunk, never read whole."""
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return limited_receive

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        method = scope["method"]
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(elapsed)
        state = scope.get("state") or {}
        job_id = state.get("job_id") or job_id_var.get()
        logger.info(
            "%s %s -> %s",
            method,
            route,
            status,
            extra={
                "status": status,
                "duration_ms": round(elapsed * 1000, 1),
                "tenant": state.get("tenant"),
                **({"job_id": str(job_id)} if job_id else {}),
            },
        )
