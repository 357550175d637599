"""Keyset page cursors for newest-first lists (jobs, comparisons): opaque to clients."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Protocol

from api.errors import InvalidRequest


class _Row(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def created_at(self) -> datetime: ...


def encode_cursor(row: _Row) -> str:
    """The cursor of the page that starts after `row`: its (created_at, id)."""
    raw = json.dumps({"c": row.created_at.isoformat(), "i": str(row.id)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """(created_at, id) from a cursor; 422 naming `cursor` for one this API did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        return datetime.fromisoformat(data["c"]), uuid.UUID(data["i"])
    except (ValueError, KeyError, TypeError):
        raise InvalidRequest(
            "cursor is not one this API returned; pass next_cursor from the previous page",
            code="invalid_cursor",
            param="cursor",
        ) from None
