"""Cached base-model evaluation results, shared by every worker (see models.BaseEvaluation)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from persistence.models import BaseEvaluation, utcnow


def get(session: Session, key: str) -> dict[str, Any] | None:
    row = session.get(BaseEvaluation, key)
    return dict(row.value) if row is not None else None


def put(session: Session, key: str, value: dict[str, Any]) -> None:
    """Store `value` under `key`; a key already present (another worker's) is kept."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(BaseEvaluation).values(key=key, value=value, created_at=utcnow())
    session.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
