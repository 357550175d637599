"""Waking a worker for a committed job: send the Celery message, then note when it was sent."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.repositories import jobs as jobs_repo
from persistence.settings import Settings

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "clo.run_job"
GPU_QUEUE = "gpu"

# Returns None or True when sent; False means "not sent" (worker.enqueue's convention).
SendFn = Callable[[str], object]


class JobEnqueuer:
    """Sends the wake-up for a job id and records `enqueued_at` for the reaper's bookkeeping."""

    def __init__(self, send: SendFn, session_factory: sessionmaker[Session]) -> None:
        self.send = send
        self.session_factory = session_factory

    def __call__(self, job_id: str) -> None:

        if self.send(job_id) is False:
            logger.warning("job not enqueued; the reaper will re-send it", extra={"job_id": job_id})
            return
        with session_scope(self.session_factory) as session:
            jobs_repo.mark_enqueued(session, [uuid.UUID(job_id)])
        logger.info("job enqueued", extra={"job_id": job_id})


def default_send(settings: Settings) -> SendFn:
    """The worker package's enqueue when installed (it knows the broker options), else Celery."""

    def send(job_id: str) -> object:
        try:
            from worker.enqueue import enqueue_job  # imported late: the API runs without it
        except ImportError:
            return celery_send(settings.broker_url or "")(job_id)
        return enqueue_job(job_id)

    return send


def celery_send(broker_url: str) -> SendFn:
    """Send `clo.run_job(job_id)` to the gpu queue through a bare Celery client."""

    def send(job_id: str) -> None:
        _celery_client(broker_url).send_task(RUN_JOB_TASK, args=[job_id], queue=GPU_QUEUE)

    return send


@lru_cache(maxsize=8)
def _celery_client(broker_url: str) -> Any:
    from celery import Celery

    return Celery("clo-api", broker=broker_url, set_as_current=False)
