"""The library's one error type and the typed job error every layer reports.

`CloError` is what a user can fix: it carries a stable `code` (the table in
docs/ERRORS.md) and the `param` it is about. `JobError` is how a failed job is shown,
by the library's CLI, the worker's job row and the API alike.
"""

from __future__ import annotations

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


class JobError(BaseModel):
    """Why a job failed: user_error (fix the request) or system_error (ours)."""

    type: ErrorType
    code: str
    message: str = Field(..., max_length=MAX_ERROR_MESSAGE)
    param: str | None = None

    @classmethod
    def make(
        cls, type_: ErrorType, code: str, message: str, param: str | None = None
    ) -> JobError:
        return cls(type=type_, code=code, message=message[:MAX_ERROR_MESSAGE], param=param)

    @classmethod
    def from_exception(cls, exc: BaseException) -> JobError:
        """The error a client sees for `exc`; system errors name the exception type only."""
        if isinstance(exc, ValidationError):
            errors = exc.errors()
            param = ".".join(str(p) for p in errors[0]["loc"]) if errors else None
            return cls.make("user_error", "invalid_spec", f"job spec is invalid: {exc}", param)
        if isinstance(exc, CloError):
            return cls.make("user_error", exc.code, str(exc), exc.param)
        if type(exc).__name__ == "OutOfMemoryError":
            return cls.make(
                "user_error",
                "out_of_memory",
                "the GPU ran out of memory; lower batch_size or max_length",
                "hyperparameters.batch_size",
            )
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return cls.make("system_error", "internal_error", text)
