"""The reaper's share of exports: re-send the wake-up of an export that is queued (its
message lost: broker down at POST time) or whose worker died (lease ran out), so it runs
without a repeated POST. Duplicates are no-ops: the claim decides (repositories.exports)."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.export_wakeup import send_export_wakeup
from persistence.repositories import exports as exports_repo
from persistence.settings import get_settings

logger = logging.getLogger(__name__)


def resend_stalled_exports(factory: sessionmaker[Session], older_than_seconds: float) -> int:
    """One pass; returns how many wake-ups were sent."""
    from worker.celery_app import app

    with session_scope(factory) as session:
        stalled = exports_repo.stalled_exports(session, older_than_seconds)
    queue = get_settings().queue
    sent = 0
    for export_id in stalled:
        if send_export_wakeup(app, export_id, queue):
            with session_scope(factory) as session:
                exports_repo.mark_enqueued(session, export_id)
            sent += 1
    if sent:
        logger.info("reaper: re-sent %d export wake-ups", sent)
    return sent
