"""Keyset page cursors for newest-first lists (jobs, comparisons): opaque and signed.

A cursor is (created_at, id) of the last row of a page, signed by the server. Unsigned,
a crafted one (a naive or out-of-range datetime, a NUL or a number for the id) reached the
query and answered 500; signed, anything this API did not issue is a 422 `invalid_cursor`
before it is parsed at all.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from itsdangerous import BadData, URLSafeSerializer

from api.artifacts.links import signing_key
from api.errors import InvalidRequest
from persistence.settings import Settings

# A salt of its own: a download-link token is never a valid cursor, nor the reverse.
_SALT = "clo.page-cursor.v1"


class _Row(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def created_at(self) -> datetime: ...


def _invalid() -> InvalidRequest:
    return InvalidRequest(
        "cursor is not one this API returned; pass next_cursor from the previous page",
        code="invalid_cursor",
        param="cursor",
    )


class CursorCodec:
    """Signs and checks cursors with the key the download links use (same in every API
    process), so a cursor from one replica works on another."""

    def __init__(self, settings: Settings) -> None:
        self._serializer = URLSafeSerializer(signing_key(settings), salt=_SALT)

    def encode(self, row: _Row) -> str:
        """The cursor of the page that starts after `row`."""
        return self._serializer.dumps([row.created_at.isoformat(), str(row.id)])

    def decode(self, cursor: str) -> tuple[datetime, uuid.UUID]:
        """(created_at, id) from a cursor; 422 naming `cursor` for one this API did not make."""
        try:
            created, row_id = self._serializer.loads(cursor)
        except (BadData, ValueError, TypeError):
            raise _invalid() from None
        # Signed means issued here; the checks below only guard against a key shared with an
        # older format, so a surprise is still a 422 and never reaches the database.
        if not (isinstance(created, str) and isinstance(row_id, str)):
            raise _invalid()
        try:
            at, ident = datetime.fromisoformat(created), uuid.UUID(row_id)
        except ValueError:
            raise _invalid() from None
        if at.tzinfo is None:
            raise _invalid()
        return at, ident
