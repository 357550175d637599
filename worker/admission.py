"""Wake a tenant's next admitted jobs when one of its jobs ends (persistence.repositories.admission:
their wake-ups were held back at POST to keep the tenant within its running cap)."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.repositories import admission
from persistence.settings import Settings

logger = logging.getLogger(__name__)


def wake_admitted(factory: sessionmaker[Session], job_id: uuid.UUID, settings: Settings) -> int:
    """Send a wake-up to each queued job of `job_id`'s tenant now within its running cap;
    one that already has a message gets a duplicate, which its claim ignores. Returns how
    many were sent; a failure is logged (the reaper re-sends wake-ups of long-queued jobs)."""
    from worker.enqueue import enqueue_job

    try:
        with session_scope(factory) as session:
            tenant_id = admission.tenant_of(session, job_id)
            if tenant_id is None:
                return 0
            ids = admission.admitted(session, tenant_id, settings.max_concurrent_jobs_per_tenant)
    except Exception:  # noqa: BLE001 - the job is over either way
        logger.exception("job %s: could not look up the tenant's next jobs", job_id)
        return 0
    sent = sum(1 for queued in ids if enqueue_job(queued))
    if sent:
        logger.info("job %s ended: woke %d queued jobs of its tenant", job_id, sent)
    return sent
