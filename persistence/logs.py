"""The one logging setup of every service process (API, worker, reaper, dispatcher).

JSON, one object per line, when `CLO_LOG_JSON` is true (the default); plain text otherwise.
Either way each line carries the job id and the request id of the POST that created the job
while code runs on its behalf: the API binds them per request (context variables), the worker
per job. A worker process runs one job at a time but logs from threads too (lease heartbeat),
and a new thread starts with empty context variables, so `bind_job(process_wide=True)` also
sets a process-wide fallback that those threads see.

Here rather than in api/ or worker/: all four processes import persistence/, and none of
this needs a web or queue stack.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# What threads without the context variables fall back to (one job per worker process).
_process_job: dict[str, str | None] = {"job_id": None, "request_id": None}

# uvicorn adds `color_message` (the message with terminal colours) to its records.
_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "color_message"}
# A request id a client may choose (X-Request-Id): short, printable, no spaces, so it can go
# into log lines, job events and queue message headers as it is.
_REQUEST_ID = re.compile(r"[!-~]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s%(ids)s"


def valid_request_id(value: str | None) -> str | None:
    """`value` if it can serve as a request id, else None."""
    return value if value is not None and _REQUEST_ID.fullmatch(value) else None


def current_job_id() -> str | None:
    return job_id_var.get() or _process_job["job_id"]


def current_request_id() -> str | None:
    return request_id_var.get() or _process_job["request_id"]


@contextmanager
def bind_job(
    job_id: str | None, request_id: str | None, *, process_wide: bool = False
) -> Iterator[None]:
    """Every log line inside carries `job_id` and `request_id` (those that are not None)."""
    job_token = job_id_var.set(job_id)
    request_token = request_id_var.set(request_id)
    outer = dict(_process_job)  # a binding inside another one gives the outer one back
    if process_wide:
        _process_job.update(job_id=job_id, request_id=request_id)
    try:
        yield
    finally:
        job_id_var.reset(job_token)
        request_id_var.reset(request_token)
        if process_wide:
            _process_job.update(outer)


def _ids(record: logging.LogRecord) -> dict[str, str]:
    """The ids of `record`: its own `extra` first, then the bound ones."""
    found = {}
    for key, current in (("job_id", current_job_id), ("request_id", current_request_id)):
        value = getattr(record, key, None) or current()
        if value:
            found[key] = str(value)
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, the ids, any `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        entry.update(_ids(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Plain text for a terminal, the ids appended as ` job_id=... request_id=...`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        ids = _ids(record)
        record.ids = "".join(f" {key}={value}" for key, value in ids.items())
        return super().format(record)


# Loggers that come with their own handlers (uvicorn's, set up before the app is imported):
# handed to ours, so the API's server lines are JSON too, and written once.
ADOPTED = ("uvicorn", "uvicorn.access")


def configure_logging(json_lines: bool = True, level: int | str = logging.INFO) -> None:
    """Send every logger's records to stderr through our handler and formatter.

    Additive: handlers others put on the root logger (pytest's capture, say) stay. A second
    call only sets the level, so a process configured once (Celery's pool children run the
    setup again) still writes each line once.
    """
    root = logging.getLogger()
    if not any(getattr(h, "_clo_handler", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler._clo_handler = True  # type: ignore[attr-defined]
        handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    for name in ADOPTED:
        adopted = logging.getLogger(name)
        for own in list(adopted.handlers):
            adopted.removeHandler(own)
        adopted.propagate = True
