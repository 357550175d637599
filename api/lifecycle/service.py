"""Deletion use cases: rows go in the request's transaction, bytes once it has committed."""

from __future__ import annotations

import logging
from functools import partial

from sqlalchemy.orm import Session

from api.artifacts.service import find_artifact
from api.deps import after_commit
from api.errors import Conflict
from persistence.models import TERMINAL_STATUSES, Job
from persistence.repositories import deletions
from service.retention import DeletesKeys, delete_stored

logger = logging.getLogger(__name__)


def _lock_finished(session: Session, job: Job, what: str) -> None:
    """Lock the job row and refuse while it is queued, running or cancelling: a worker may
    still write its artifacts."""
    session.refresh(job, with_for_update=True)
    if job.status not in TERMINAL_STATUSES:
        raise Conflict(
            f"job {job.id} is {job.status}; {what} once it has finished "
            "(POST /v1/jobs/{id}/cancel stops it)",
            code="job_not_finished",
        )


def delete_job(session: Session, job: Job, store: DeletesKeys) -> None:
    """Delete a finished job: its events, metrics and artifacts (rows and bytes). A
    deleted_jobs row keeps what ran, when, and what was freed; webhook deliveries stay in
    their endpoint's log."""
    _lock_finished(session, job, "delete it")
    job_id = job.id
    keys = deletions.delete_job(session, job)
    after_commit(session, partial(delete_stored, store, keys))
    logger.info("job deleted", extra={"job_id": str(job_id), "artifacts": len(keys)})


def delete_artifact(session: Session, job: Job, name: str, store: DeletesKeys) -> None:
    """Delete one artifact of a finished job, row and bytes; the job's events note it."""
    _lock_finished(session, job, "delete its artifacts")
    row = find_artifact(session, job.id, name)
    key = deletions.delete_artifact(session, row, "deleted by request")
    after_commit(session, partial(delete_stored, store, [key]))
