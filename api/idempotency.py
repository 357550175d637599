"""Idempotent creates: an Idempotency-Key names one request body; a retry gets the first answer.

Shared by POST /v1/jobs and POST /v1/comparisons.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, TypeVar

from fastapi import Response

from api.errors import Conflict, ErrorEnvelope


class _Keyed(Protocol):
    @property
    def request_hash(self) -> str | None: ...


Row = TypeVar("Row", bound=_Keyed)


def request_hash(request: Any) -> str:
    """sha256 of the request's canonical JSON form (sorted keys, no spaces)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def same_request(row: Row, request_hash: str, noun: str) -> Row:
    """The row stored under the key, if it was made from the same body; 409 otherwise."""
    if row.request_hash != request_hash:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body; "
            f"use a new key for a new {noun}",
            code="idempotency_key_reused",
            param="Idempotency-Key",
        )
    return row


def create_responses(model: type, retried: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses of an idempotent create, besides its 201."""
    return {
        200: {"model": model, "description": f"Idempotent retry: {retried}"},
        409: {"model": ErrorEnvelope, "description": "Idempotency-Key reused with another body"},
        429: {"model": ErrorEnvelope, "description": "Too many active jobs; see Retry-After"},
    }


def answer_created(response: Response, created: bool, location: str) -> None:
    """201 for a new row, 200 for a retry; Location names the row either way."""
    if not created:
        response.status_code = 200
    response.headers["Location"] = location
