"""Retention: artifacts of jobs finished more than `artifact_retention_days` ago are deleted,
rows first, bytes after the commit (persistence.repositories.deletions)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.models import utcnow
from persistence.repositories import deletions
from persistence.settings import Settings

logger = logging.getLogger(__name__)

BATCH = 200


class DeletesKeys(Protocol):
    """The one store method deletion needs (the local folder store and object stores)."""

    def delete(self, key: str) -> None: ...


def delete_stored(store: DeletesKeys, keys: list[str]) -> None:
    """Delete the bytes behind `keys`; a failure is logged and leaves an orphan, never raises."""
    for key in keys:
        try:
            store.delete(key)
        except Exception:  # noqa: BLE001 - the rows are gone already; keep going
            logger.exception("could not delete stored object %s", key)


def remove_expired_artifacts(
    factory: sessionmaker[Session], settings: Settings, store: DeletesKeys
) -> int:
    """One retention pass; returns the number of artifacts deleted (0 when retention is off)."""
    if settings.artifact_retention_days is None:
        return 0
    cutoff = utcnow() - timedelta(days=settings.artifact_retention_days)
    removed = 0
    while True:
        with session_scope(factory) as session:
            rows = deletions.expired_artifacts(session, cutoff, BATCH)
            keys = [deletions.delete_artifact(session, row, "retention") for row in rows]
        delete_stored(store, keys)
        removed += len(keys)
        if len(rows) < BATCH:
            break
    if removed:
        logger.info("retention: deleted %d artifacts of jobs finished before %s", removed, cutoff)
    return removed
