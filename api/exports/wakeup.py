"""Waking a worker for a committed export: the API's own send-only Celery client (api/ never
imports worker/), then `enqueued_at` noted."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.export_wakeup import send_export_wakeup
from persistence.repositories import exports as exports_repo
from persistence.settings import Settings
from persistence.wakeup import broker_options

logger = logging.getLogger(__name__)

# export id -> sent (False: not sent; a repeated POST re-sends a queued export's wake-up)
ExportSend = Callable[[str], object]


def default_export_send(settings: Settings) -> ExportSend:
    """Send on the jobs' broker and queue: exports run on the same GPU workers."""
    broker, data_dir, queue = settings.broker_url or "", settings.data_dir, settings.queue

    def send(export_id: str) -> bool:
        return send_export_wakeup(_client(broker, data_dir), export_id, queue)

    return send


@lru_cache(maxsize=8)
def _client(broker_url: str, data_dir: Path) -> Celery:
    client = Celery("clo-api-exports", broker=broker_url, set_as_current=False)
    client.conf.update(
        broker_transport_options=broker_options(broker_url, data_dir, None),
        broker_connection_timeout=5,
    )
    return client


def wake(send: ExportSend, factory: sessionmaker[Session], export_id: uuid.UUID) -> None:
    """After commit: send the wake-up and note when."""
    if send(str(export_id)) is False:
        logger.warning("export %s not enqueued; a repeated POST re-sends it", export_id)
        return
    with session_scope(factory) as session:
        exports_repo.mark_enqueued(session, export_id)
