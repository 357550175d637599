"""Send a job's wake-up message. Call only after the job row is committed."""

import uuid

from persistence.settings import get_settings
from persistence.wakeup import send_wakeup
from worker.celery_app import app


def enqueue_job(job_id: str | uuid.UUID) -> bool:
    """Publish `clo.run_job(job_id)` on the GPU queue; False (logged) if the broker refused."""
    return send_wakeup(app, job_id, get_settings().queue)
