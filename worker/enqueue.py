"""Send a job's wake-up message. Call only after the job row is committed."""

import os
import uuid
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from persistence.db import make_engine, make_session_factory, session_scope
from persistence.models import Job
from persistence.settings import Settings, get_settings
from persistence.wakeup import send_wakeup
from service.gpu_routing import queue_for
from worker.celery_app import app


def enqueue_job(job_id: str | uuid.UUID, queue: str | None = None) -> bool:
    """Publish `clo.run_job(job_id)` on the job's queue (its GPU class's where the fleet has
    classes, service.gpu_routing); False (logged) if the broker refused."""
    settings = get_settings()
    return send_wakeup(app, job_id, queue or job_queue(job_id, settings))


def job_queue(job_id: str | uuid.UUID, settings: Settings) -> str:
    """The queue of the job's GPU class, from the estimate stored at submission."""
    if not settings.gpu_classes:
        return settings.queue
    with session_scope(_factory(settings.db_url, os.getpid())) as session:
        resolved = session.scalar(select(Job.resolved).where(Job.id == uuid.UUID(str(job_id))))
    return queue_for(resolved, settings)


@lru_cache(maxsize=2)
def _factory(url: str, pid: int) -> sessionmaker[Session]:
    # Keyed by pid: a forked pool child must not reuse its parent's connections.
    return make_session_factory(make_engine(url))
