"""The export wake-up message (task name and send), agreed between the API and the worker as
persistence.wakeup is for jobs: the message carries an export id; Postgres decides who runs it
(repositories.exports), so a duplicate is harmless."""

from __future__ import annotations

import logging
import uuid

from persistence.wakeup import RETRY_POLICY, TaskSender

logger = logging.getLogger(__name__)

EXPORT_TASK_NAME = "clo.run_export"


def send_export_wakeup(sender: TaskSender, export_id: str | uuid.UUID, queue: str) -> bool:
    """Publish `clo.run_export(export_id)` on `queue` (the jobs' queue: exports need the same
    GPU workers); False (logged) if the broker refused."""
    try:
        sender.send_task(
            EXPORT_TASK_NAME,
            args=[str(export_id)],
            queue=queue,
            retry=True,
            retry_policy=RETRY_POLICY,
        )
    except Exception:  # noqa: BLE001 - a repeated POST re-sends it
        logger.exception("could not enqueue export %s", export_id)
        return False
    logger.info("enqueued export %s", export_id)
    return True
