"""The job wake-up message, agreed in one place: the API sends it, the worker consumes it.

Each side has its own Celery client (the API a bare one that only sends, the worker the full
app), so this module imports no Celery: it holds the task name, the broker transport options
both clients must share, and the send with its fail-fast retry policy.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any, Protocol

from persistence.logs import current_request_id

logger = logging.getLogger(__name__)

TASK_NAME = "clo.run_job"
DEFAULT_QUEUE = "gpu"
# A message header, not a task argument: the request id of the POST that created the job, for
# the worker's log lines (a worker of an older release ignores an unknown header).
REQUEST_ID_HEADER = "clo_request_id"

# Fail fast when the broker is down: the job row is already committed and the reaper
# re-sends wake-ups of queued jobs, so a lost message only delays the job.
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1}


class TaskSender(Protocol):
    """What `send_wakeup` needs of a Celery app."""

    def send_task(self, name: str, args: list[str], **options: Any) -> Any:
        """Publish one task message."""


def broker_options(
    broker_url: str, data_dir: Path, visibility_timeout: int | None
) -> dict[str, Any]:
    """Transport options: folders for the embedded filesystem broker, else a visibility timeout
    (None: the transport's default, enough for a client that only sends)."""
    if broker_url.startswith("filesystem"):
        # Producer and consumer must share one folder: data_folder_in == data_folder_out.
        queue_dir = (data_dir / "broker" / "queue").resolve()
        processed = (data_dir / "broker" / "processed").resolve()
        # Kombu's default control folder is ./control, which litters whatever directory the
        # worker was started from with exchange tables.
        control = (data_dir / "broker" / "control").resolve()
        for folder in (queue_dir, processed, control):
            folder.mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "processed_folder": str(processed),
            "store_processed": False,
            "control_folder": str(control),
        }
    return {} if visibility_timeout is None else {"visibility_timeout": visibility_timeout}


def send_wakeup(
    sender: TaskSender, job_id: str | uuid.UUID, queue: str, request_id: str | None = None
) -> bool:
    """Publish `clo.run_job(job_id)` on `queue`; False (logged) if the broker refused.

    The message carries `request_id` (default: the one bound to this request or job, see
    persistence.logs) in its REQUEST_ID_HEADER header."""
    request_id = request_id or current_request_id()
    headers = {REQUEST_ID_HEADER: request_id} if request_id else {}
    # any broker failure is recoverable by the reaper
    return publish(
        sender,
        TASK_NAME,
        "job",
        job_id,
        queue,
        headers,
        on_failure="; the reaper will re-send it",
        log_extra={"job_id": str(job_id)},
    )


def publish(
    sender: TaskSender,
    task_name: str,
    kind: str,
    entity_id: str | uuid.UUID,
    queue: str,
    headers: dict[str, str] | None = None,
    on_failure: str = "",
    log_extra: dict[str, str] | None = None,
) -> bool:
    """Send `task_name(entity_id)` on `queue`, retrying per RETRY_POLICY; False (logged with
    `on_failure` appended) if the broker refused. `log_extra` goes on the "enqueued" line.
    Jobs' and exports' wake-ups both go here."""
    try:
        sender.send_task(
            task_name,
            args=[str(entity_id)],
            queue=queue,
            retry=True,
            retry_policy=RETRY_POLICY,
            headers=headers or {},
        )
    except Exception:  # noqa: BLE001 - the caller's recovery path re-sends it
        logger.exception("could not enqueue %s %s%s", kind, entity_id, on_failure)
        return False
    logger.info("enqueued %s %s", kind, entity_id, extra=log_extra)
    return True
