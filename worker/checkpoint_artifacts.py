"""A stopped job's last committed checkpoint, kept as an artifact of the job.

The work folder is scratch, removed once the job is over, so a checkpoint a tenant may
download must be in the artifact store. When the worker's own attempt ends a job failed or
cancelled, the checkpoint the job last committed under its lease (jobs.checkpoint_path /
checkpoint_step) is stored as `checkpoint-step-<n>.tar` (kind "checkpoint"): trainable
weights (trainable.safetensors, named as the model's parameters), optimizer.pt and
state.json. A succeeded job has none: its export supersedes its checkpoints (clo.pipeline
removes them once the adapter is written).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from clo.checkpoint import checkpoint_at
from persistence.artifact_store import make_key
from persistence.db import session_scope
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import leases
from persistence.settings import Settings
from persistence.storage import open_store
from worker.lease import HeldLease

logger = logging.getLogger(__name__)


def checkpoint_artifact_name(step: int) -> str:
    return f"checkpoint-step-{step}.tar"


def keep_committed_checkpoint(
    held: HeldLease, settings: Settings, factory: sessionmaker[Session]
) -> str | None:
    """Store the job's committed checkpoint as an artifact (under the lease); its name, or
    None when there is none here (no checkpoint yet, or written on another host). Never
    raises: the job's end must not depend on it."""
    job_id = held.lease.job_id
    try:
        with session_scope(factory) as session:
            job = jobs_repo.get_job(session, job_id)
            path, step = (job.checkpoint_path, job.checkpoint_step) if job else (None, None)
        if not path or step is None:
            return None
        folder = checkpoint_at(Path(path), step)
        if not (folder / "state.json").is_file():
            logger.info("job %s: committed checkpoint %d is not on this host", job_id, step)
            return None
        name = checkpoint_artifact_name(step)
        if not held.confirm():  # the store is outside the fenced UPDATEs
            return None
        store = open_store(settings)
        stored = store.write_dir_archive(make_key("jobs", str(job_id), name), folder)
        if not held.write(leases.record_artifact, name, "checkpoint", stored):
            store.delete(stored.key)
            return None
    except Exception:  # noqa: BLE001 - a job that failed must still be marked failed
        logger.exception("job %s: could not keep its checkpoint as an artifact", job_id)
        return None
    logger.info("job %s: checkpoint at step %d kept as %s", job_id, step, name)
    return name
