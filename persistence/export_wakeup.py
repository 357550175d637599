"""The export wake-up message (task name and send), agreed between the API and the worker as
persistence.wakeup is for jobs: the message carries an export id; Postgres decides who runs it
(repositories.exports), so a duplicate is harmless."""

from __future__ import annotations

import uuid

from persistence.wakeup import TaskSender, publish

EXPORT_TASK_NAME = "clo.run_export"


def send_export_wakeup(sender: TaskSender, export_id: str | uuid.UUID, queue: str) -> bool:
    """Publish `clo.run_export(export_id)` on `queue` (the jobs' queue: exports need the same
    GPU workers); False (logged) if the broker refused: a repeated POST re-sends it."""
    return publish(sender, EXPORT_TASK_NAME, "export", export_id, queue)
