"""Shared translation cache: a crashed job's retry reuses what was already translated."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from persistence.models import TranslationCacheEntry, utcnow

_BATCH = 500


def get_many(session: Session, keys: Iterable[str]) -> dict[str, str]:
    wanted = list(dict.fromkeys(keys))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _BATCH):
        chunk = wanted[start : start + _BATCH]
        query = select(TranslationCacheEntry).where(TranslationCacheEntry.key.in_(chunk))
        found.update({row.key: row.text for row in session.scalars(query)})
    return found


def put_many(session: Session, entries: Mapping[str, str]) -> None:
    """Insert entries; keys already present (another worker got there first) are kept."""
    if not entries:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    rows = [{"key": k, "text": v, "created_at": now} for k, v in entries.items()]
    for start in range(0, len(rows), _BATCH):
        stmt = insert(TranslationCacheEntry).values(rows[start : start + _BATCH])
        session.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
