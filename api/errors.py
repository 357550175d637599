"""Domain exceptions carry their HTTP status; the handlers here render every error the same way.

Envelope: {"error": {"type": "user_error"|"system_error", "code", "message", "param"}}.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from clo.spec import JobSpec
from persistence.artifact_store import StorageUnavailableError

logger = logging.getLogger(__name__)


class ApiError(Exception):
    status_code = 400
    type = "user_error"
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.param = param
        self.headers = headers or {}
        self.details = details


class BadRequest(ApiError):
    status_code = 400
    code = "bad_request"


class RangeNotSatisfiable(ApiError):
    status_code = 416
    code = "range_not_satisfiable"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class Unauthorized(ApiError):
    status_code = 401
    code = "invalid_api_key"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class Gone(ApiError):
    status_code = 410
    code = "gone"


class InvalidRequest(ApiError):
    status_code = 422
    code = "invalid_request"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class TooManyRequests(ApiError):
    status_code = 429
    code = "too_many_requests"


class ServiceUnavailable(ApiError):
    status_code = 503
    type = "system_error"
    code = "service_unavailable"


class BodyTooLarge(StarletteHTTPException):
    """Raised from inside `receive` once the bytes received pass the limit.

    An HTTPException because FastAPI re-raises those from body parsing (any other exception
    becomes "There was an error parsing the body", a 400); rendered by `_http_error`.
    """

    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class ErrorDetail(BaseModel):
    type: str
    code: str
    message: str
    param: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorEnvelope(BaseModel):
    """Every non-2xx response body."""

    error: ErrorDetail


def _doc(description: str) -> dict[str, Any]:
    return {"model": ErrorEnvelope, "description": description}


# Documented on every router so clients (and schema checkers) know each error's shape.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _doc("Malformed request (a body that cannot be parsed)"),
    401: _doc("Missing, invalid or revoked API key"),
    404: _doc("Not found, or owned by another tenant"),
    413: _doc("Request body too large"),
    422: _doc("Invalid input; `param` names the field"),
    503: _doc("Database or broker unavailable; retry"),
}


def error_body(type_: str, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type_, "code": code, "message": message, "param": param}}


def _render(exc: ApiError) -> JSONResponse:
    body = error_body(exc.type, exc.code, exc.message, exc.param)
    if exc.details is not None:
        body["error"]["details"] = exc.details  # e.g. every bad line of an upload
    return JSONResponse(
        body,
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _render(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors() or [{"loc": (), "msg": "invalid request", "type": "invalid"}]
    # Every problem at once, so a client fixes its body in one round trip; param and
    # message stay the first one's for clients that read only those.
    details = [_problem(error) for error in errors]
    param, message = details[0]["param"], details[0]["message"]
    more = f" (and {len(errors) - 1} more problem(s), see details)" if len(errors) > 1 else ""
    text = f"{param}: {message}{more}" if param else f"{message}{more}"
    body = error_body("user_error", "validation_error", text, param)
    body["error"]["details"] = details
    return JSONResponse(body, status_code=422)


def _problem(error: Any) -> dict[str, Any]:
    """One pydantic error as {param, message, code}; code is pydantic's error type."""
    loc = list(error.get("loc", ()))
    where, raw = (loc[0], loc[1:]) if loc and loc[0] in _LOCATIONS else ("body", loc)
    path = [str(p) for p in raw]
    message = str(error.get("msg", "invalid request")).removeprefix("Value error, ")
    param = _param_name(raw) or None
    if where == "body":
        param = _field_named_in(path, message) or param
    return {"param": param, "message": message, "code": str(error.get("type", "invalid"))}


_LOCATIONS = {"body", "query", "path", "header", "cookie"}


def _param_name(path: list[Any]) -> str:
    """Dotted field path with list items indexed: ("runs", 1, "method") -> runs[1].method."""
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


def _field_named_in(path: list[str], message: str) -> str | None:
    """For a model-level validator error, the field of that model its message names first.

    `{"target_language": "en"}` fails in JobSpec's model validator at loc ("body",); the
    message starts with "target_language must not be English", so param is target_language.
    """
    model: type[BaseModel] | None = JobSpec
    for part in path:
        field = model.model_fields.get(part) if model else None
        annotation = field.annotation if field else None
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    if model is None:
        return None
    hits = [(message.find(name), name) for name in model.model_fields if name in message]
    if not hits:
        return None
    return ".".join([*path, min(hits)[1]])


# nginx's "client closed request": what the request log and metrics record for a client that
# hung up before its body arrived. Nothing is sent (the server drops it): no 4xx/5xx counted.
CLIENT_CLOSED_REQUEST = 499


async def _client_disconnected(request: Request, _exc: Exception) -> JSONResponse:
    # The client's problem, not a bug: a warning, not an ERROR with a traceback.
    logger.warning(
        "client disconnected before its request body was received: %s %s",
        request.method,
        request.url.path,
    )
    return JSONResponse(
        error_body("user_error", "client_disconnected", "the request body was not received"),
        status_code=CLIENT_CLOSED_REQUEST,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ClientDisconnect):
        # FastAPI turns a failed body read into "There was an error parsing the body" (400).
        return await _client_disconnected(request, exc.__cause__)
    codes = {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }
    code = getattr(exc, "code", None) or codes.get(exc.status_code, "http_error")
    message = str(exc.detail)
    allowed = (exc.headers or {}).get("Allow")
    if exc.status_code == 405 and allowed:
        message = f"{request.method} is not allowed on this path; it takes {allowed}"
    return JSONResponse(
        error_body("user_error", code, message),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _db_unavailable(request: Request, exc: Exception) -> JSONResponse:
    if getattr(getattr(exc, "orig", None), "sqlstate", None) == "57014":
        return await _db_busy(request, exc)  # statement_timeout: overloaded, not down
    # Postgres down or restarting: the client should retry, so 503 and not a 500.
    logger.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
    return JSONResponse(
        error_body(
            "system_error", "database_unavailable", "the database is unavailable; retry shortly"
        ),
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _db_busy(_request: Request, exc: Exception) -> JSONResponse:
    # Every pooled connection is in use and none came back within pool_timeout: overload, not
    # a bug, so the client should back off and retry (503 + Retry-After), never a 500.
    logger.warning("database pool exhausted: %s", str(exc).splitlines()[0] if str(exc) else exc)
    return JSONResponse(
        error_body("system_error", "database_busy", "the service is busy; retry shortly"),
        status_code=503,
        headers={"Retry-After": "2"},
    )


async def _storage_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # The object store (CLO_STORAGE_URL) did not answer an upload or a read: retry, not a bug.
    logger.warning("artifact store unavailable: %s", exc)
    return JSONResponse(
        error_body(
            "system_error", "storage_unavailable", "the artifact store is unreachable; retry"
        ),
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if exc.connection_invalidated:
        return await _db_unavailable(request, exc)
    return await _internal(request, exc)


async def _data_error(_request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value the schemas let through (a NUL byte in a string...).
    logger.info("database rejected a request value: %s", type(getattr(exc, "orig", exc)).__name__)
    return JSONResponse(
        error_body("user_error", "invalid_value", "a request value is not acceptable"),
        status_code=422,
    )


async def _internal(_request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    return JSONResponse(
        error_body("system_error", "internal_error", "internal server error"), status_code=500
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnected)
    app.add_exception_handler(OperationalError, _db_unavailable)
    app.add_exception_handler(PoolTimeoutError, _db_busy)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(DBAPIError, _dbapi_error)
    app.add_exception_handler(StorageUnavailableError, _storage_unavailable)
    app.add_exception_handler(Exception, _internal)
