"""Send a job's wake-up message. Call only after the job row is committed."""

import logging
import uuid

from worker.celery_app import TASK_NAME, app
from worker.config import get_worker_settings

logger = logging.getLogger(__name__)

# Fail fast when the broker is down: the job row is already committed and the reaper
# re-sends wake-ups of queued jobs, so a lost message only delays the job.
_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1}


def enqueue_job(job_id: str | uuid.UUID) -> bool:
    """Publish `clo.run_job(job_id)` on the GPU queue; False (logged) if the broker refused."""
    try:
        app.send_task(
            TASK_NAME,
            args=[str(job_id)],
            queue=get_worker_settings().queue,
            retry=True,
            retry_policy=_RETRY_POLICY,
        )
    except Exception:  # noqa: BLE001 - any broker failure is recoverable by the reaper
        logger.exception("could not enqueue job %s; the reaper will re-send it", job_id)
        return False
    logger.info("enqueued job %s", job_id)
    return True
