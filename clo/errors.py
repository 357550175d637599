"""The library's one error type and the typed job error every layer reports.

`CloError` is what a user can fix: it carries a stable `code` (the table in
docs/ERRORS.md) and the `param` it is about. `JobError` is how a failed job is shown,
by the library's CLI, the worker's job row and the API alike.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

# Longest message a job error carries: a traceback-sized string would bloat every job read.
MAX_ERROR_MESSAGE = 2000


class CloError(Exception):
    """A problem the user can fix (bad input, missing file, bad option)."""

    code: str = "invalid_input"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.code = code or type(self).code
        self.param = param


class Stopped(Exception):
    """Raised by a long-running function when its should_stop hook asked it to stop."""


ErrorType = Literal["user_error", "system_error"]

# An absolute filesystem path with at least one folder: not a hub id (no leading slash), not
# a URL's `//host/...` (a slash or colon before it). Tenants see its last part only.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"`]+/)+([^\s/'\"`:,;()\[\]]*)")


def scrub_paths(text: str, aliases: Mapping[str, str] | None = None) -> str:
    """`text` without server paths: each alias (a local path -> the name the client used)
    replaced first, longest first, then any other absolute path cut to its last part."""
    for path in sorted(aliases or {}, key=len, reverse=True):
        if path:
            text = text.replace(path, (aliases or {})[path])
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "<path>", text)


def new_reference() -> str:
    """A short id that ties a tenant's system error to the server log line with its details."""
    return uuid.uuid4().hex[:12]


class JobError(BaseModel):
    """Why a job failed: user_error (fix the request) or system_error (ours)."""

    type: ErrorType
    code: str
    message: str = Field(..., max_length=MAX_ERROR_MESSAGE)
    param: str | None = None

    @classmethod
    def make(cls, type_: ErrorType, code: str, message: str, param: str | None = None) -> JobError:
        return cls(type=type_, code=code, message=message[:MAX_ERROR_MESSAGE], param=param)

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        *,
        reference: str | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> JobError:
        """The error a client sees for `exc`, safe to show a tenant.

        User errors keep their message, with server paths taken out (`aliases` maps a local
        path to the name the client knows it by, e.g. a model folder to its catalogue name).
        System errors carry no exception text at all (it holds paths, hostnames, SQL): only
        `reference`, which the caller logs next to the details.
        """
        if isinstance(exc, ValidationError):
            errors = exc.errors()
            param = ".".join(str(p) for p in errors[0]["loc"]) if errors else None
            text = scrub_paths(f"job spec is invalid: {exc}", aliases)
            return cls.make("user_error", "invalid_spec", text, param)
        if isinstance(exc, CloError):
            return cls.make("user_error", exc.code, scrub_paths(str(exc), aliases), exc.param)
        if type(exc).__name__ == "OutOfMemoryError":
            return cls.make(
                "user_error",
                "out_of_memory",
                "the GPU ran out of memory; lower batch_size or max_length",
                "hyperparameters.batch_size",
            )
        reference = reference or new_reference()
        return cls.make("system_error", "internal_error", f"internal error (reference {reference})")
