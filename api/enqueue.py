"""Waking a worker for a committed job: send the Celery message, then note when it was sent."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.repositories import jobs as jobs_repo
from persistence.settings import Settings
from persistence.wakeup import DEFAULT_QUEUE, TASK_NAME, broker_options, send_wakeup

logger = logging.getLogger(__name__)

RUN_JOB_TASK = TASK_NAME
GPU_QUEUE = DEFAULT_QUEUE

# Returns None or True when sent; False means "not sent" (persistence.wakeup's convention).
# Called as send(job_id), or send(job_id, queue) for a GPU class's queue (service.gpu_routing).
SendFn = Callable[..., object]


class JobEnqueuer:
    """Sends the wake-up for a job id and records `enqueued_at` for the reaper's bookkeeping."""

    def __init__(self, send: SendFn, session_factory: sessionmaker[Session]) -> None:
        self.send = send
        self.session_factory = session_factory

    def __call__(self, job_id: str, queue: str | None = None) -> None:
        sent = self.send(job_id) if queue is None else self.send(job_id, queue)
        if sent is False:
            logger.warning("job not enqueued; the reaper will re-send it", extra={"job_id": job_id})
            return
        with session_scope(self.session_factory) as session:
            jobs_repo.mark_enqueued(session, [uuid.UUID(job_id)])
        logger.info("job enqueued", extra={"job_id": job_id})


def default_send(settings: Settings) -> SendFn:
    """Send on the configured broker and queue, with the transport options the worker uses."""
    return celery_send(settings.broker_url or "", settings.queue, settings.data_dir)


def celery_send(
    broker_url: str, queue: str = DEFAULT_QUEUE, data_dir: Path = Path("var")
) -> SendFn:
    """Send `clo.run_job(job_id)` to `queue` through the API's own send-only Celery client."""

    def send(job_id: str, to: str = queue) -> bool:
        return send_wakeup(_celery_client(broker_url, data_dir), job_id, to)

    return send


@lru_cache(maxsize=8)
def _celery_client(broker_url: str, data_dir: Path) -> Celery:
    client = Celery("clo-api", broker=broker_url, set_as_current=False)
    # The worker's app is not imported here (api/ never imports worker/): the options that
    # must match, like the filesystem broker's shared folder, come from persistence.wakeup.
    client.conf.update(
        broker_transport_options=broker_options(broker_url, data_dir, None),
        broker_connection_timeout=5,
    )
    return client
