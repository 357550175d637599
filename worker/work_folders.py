"""Per-job scratch folders (<work_root>/<job id>): removed once their job is over.

The runner removes a folder when its own attempt ends the job; jobs that end elsewhere (the
API cancels a queued job, the reaper fails one at the attempt cap, a job is deleted) leave
theirs behind, so each job start first sweeps the folders of finished jobs on this machine.
A failed job's folder stays when `keep_failed_work` is set, for debugging.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.models import Job

logger = logging.getLogger(__name__)

TERMINAL = ("succeeded", "failed", "cancelled")


def remove_work_folder(folder: Path, status: str, keep_failed: bool) -> bool:
    """Remove a finished job's folder (a failed one's only without keep_failed)."""
    if status == "failed" and keep_failed:
        logger.info("keeping the work folder of failed job %s (keep_failed_work)", folder.name)
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def sweep_finished(factory: sessionmaker[Session], work_root: Path, keep_failed: bool) -> int:
    """Remove the folders of jobs that are over or gone; returns how many were removed."""
    if not work_root.is_dir():
        return 0
    folders: dict[uuid.UUID, Path] = {}
    for path in work_root.iterdir():
        try:
            folders[uuid.UUID(path.name)] = path
        except ValueError:
            continue  # not a job's folder: not ours to judge
    if not folders:
        return 0
    with session_scope(factory) as session:
        rows = session.execute(select(Job.id, Job.status).where(Job.id.in_(folders))).all()
    statuses: dict[uuid.UUID, str] = {job_id: status for job_id, status in rows}
    removed = 0
    for job_id, folder in folders.items():
        status = statuses.get(job_id, "deleted")
        if status in (*TERMINAL, "deleted") and remove_work_folder(folder, status, keep_failed):
            removed += 1
    if removed:
        logger.info("removed %d work folders of finished jobs", removed)
    return removed
