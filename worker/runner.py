"""Run one job: claim it, hold the lease, run the clo pipeline, record the outcome.

Every write goes through the lease (repositories.leases), so a worker that lost its lease
(expired, taken over, job finished elsewhere) stops and changes nothing.
"""

from __future__ import annotations

import logging
import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from clo.checkpoint import CheckpointFence, checkpoint_at, fenced_checkpoints
from clo.errors import JobError, Stopped, new_reference
from clo.pipeline import PipelineHooks, run_pipeline
from clo.resolve import ResolvedJob
from persistence.artifact_store import StorageUnavailableError
from persistence.db import make_engine, make_session_factory, session_scope
from persistence.logs import bind_job
from persistence.models import utcnow
from persistence.repositories import events as events_repo
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import leases
from persistence.settings import Settings, get_settings
from persistence.storage import open_store
from worker import admission, job_io, lease_endings, metrics, work_folders
from worker.checkpoint_artifacts import keep_committed_checkpoint
from worker.checkpoint_store import CheckpointSync
from worker.config import WorkerSettings, get_worker_settings
from worker.lease import HeldLease, is_transient_db_error
from worker.progress import ProgressRecorder
from worker.shutdown import shutdown_requested

logger = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _session_factory(url: str, pid: int, lease_seconds: int) -> sessionmaker[Session]:
    # Keyed by pid: a forked pool child must not reuse its parent's connections.
    # A transaction left idle for a lease (the process froze inside it) is ended by Postgres,
    # so its row lock cannot hide the job from the reaper once the lease has expired.
    engine = make_engine(url, idle_in_transaction_timeout_s=lease_seconds)
    return make_session_factory(engine)


def session_factory() -> sessionmaker[Session]:
    settings = get_settings()
    return _session_factory(settings.db_url, os.getpid(), settings.lease_seconds)


def error_for(
    exc: BaseException, *, reference: str | None = None, aliases: dict[str, str] | None = None
) -> dict[str, Any]:
    """The typed job error clients see for `exc` (clo.errors.JobError, as stored): no server
    paths, and for a system error no exception text, only `reference` (see _log_failure)."""
    return JobError.from_exception(exc, reference=reference, aliases=aliases).model_dump()


def _log_failure(job_id: uuid.UUID, exc: Exception, error: dict[str, Any], reference: str) -> None:
    """The details the tenant does not see, for operators: the raw text (paths included), and
    for a system error the traceback, keyed by job id and the reference in the job's error."""
    if error["type"] == "user_error":
        logger.warning("job %s failed: %s: %s", job_id, error["code"], exc)
    else:
        logger.error(
            "job %s failed (reference %s): %s: %s",
            job_id,
            reference,
            type(exc).__name__,
            exc,
            exc_info=exc,
            extra={"job_id": str(job_id), "error_reference": reference},
        )


def _model_aliases(resolved: ResolvedJob) -> dict[str, str]:
    """Local model folders -> the catalogue names the tenant asked for."""
    refs = [resolved.base_model, resolved.translator]
    return {ref.source: ref.name for ref in refs if ref is not None and ref.source != ref.name}


def run_job(
    job_id: str,
    *,
    worker_id: str,
    request_id: str | None = None,
    settings: Settings | None = None,
    wsettings: WorkerSettings | None = None,
    factory: sessionmaker[Session] | None = None,
) -> str:
    """Claim and run a job; returns the outcome ("not_claimable", "lease_lost", or a status).

    `request_id`: of the POST that created the job (the message header); a wake-up without
    one (re-sent by the reaper) takes it from the job's first event. Every log line of the
    run carries both ids."""
    settings = settings or get_settings()
    wsettings = wsettings or get_worker_settings()
    factory = factory or session_factory()
    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError:
        logger.error("ignoring message with malformed job id %r", job_id)
        return "not_claimable"
    try:
        work_folders.sweep_finished(factory, wsettings.work_root, wsettings.keep_failed_work)
    except Exception:  # noqa: BLE001 - housekeeping must not keep a job from running
        logger.exception("sweeping finished jobs' work folders failed")
    if request_id is None:
        with session_scope(factory) as session:
            request_id = events_repo.creating_request_id(session, job_uuid)
    outcome = "interrupted"  # what is counted if the process is stopped from outside
    with bind_job(str(job_uuid), request_id, process_wide=True):
        try:
            outcome = _claim_and_run(job_uuid, worker_id, settings, wsettings, factory)
        finally:
            metrics.count_outcome(outcome)
    return outcome


def _claim_and_run(
    job_uuid: uuid.UUID,
    worker_id: str,
    settings: Settings,
    wsettings: WorkerSettings,
    factory: sessionmaker[Session],
) -> str:
    with session_scope(factory) as session:
        entry = events_repo.queue_entry(session, job_uuid)
        lease = leases.claim_job(
            session,
            job_uuid,
            worker_id,
            settings.lease_seconds,
            running_cap=settings.max_concurrent_jobs_per_tenant,
        )
    if lease is None:
        logger.info("job %s is not claimable (finished, cancelled, or held): skipping", job_uuid)
        return "not_claimable"
    held = HeldLease(
        lease,
        factory,
        settings.lease_seconds,
        settings.heartbeat_seconds,
        cancel_poll_seconds=wsettings.cancel_poll_seconds,
    )
    with held:
        try:
            if entry is not None:
                metrics.observe_queue_wait(entry.created_at, utcnow())
                if entry.type != "queued":
                    metrics.count_requeue(entry.type)
            logger.info("job %s claimed by %s (attempt %d)", job_uuid, worker_id, lease.attempt)
            return _run_claimed(held, settings, wsettings, factory)
        except BaseException as exc:
            # Terminated between the claim and the attempt's own handler (CI hit this: the
            # SIGTERM landed right after the claim committed): hand back here, or the
            # expired lease would count an attempt.
            if _terminating(exc) and not (held.handed_back or held.lost.is_set()):
                lease_endings.hand_back(held, f"worker process terminated ({type(exc).__name__})")
            raise


def _run_claimed(
    held: HeldLease, settings: Settings, wsettings: WorkerSettings, factory: sessionmaker[Session]
) -> str:
    workdir = wsettings.work_root / str(held.lease.job_id)
    sync = _checkpoint_sync(held, settings, workdir)
    recorder = ProgressRecorder(held, wsettings.progress_interval_seconds, sync)
    outcome = _run_attempt(held, recorder, workdir, settings, factory, sync)
    if outcome in work_folders.TERMINAL:
        # A running slot of the tenant is free: its next held job may start.
        admission.wake_admitted(factory, held.lease.job_id, settings)
        # Only a resumed attempt reads the folder; a released or lost job keeps it for that.
        work_folders.remove_work_folder(workdir, outcome, wsettings.keep_failed_work)
        if sync is not None:
            sync.remove_all()
    return outcome


def _terminating(exc: BaseException) -> bool:
    """Whether `exc` is, or arose while handling, a SystemExit / KeyboardInterrupt: a SIGTERM
    landing inside a database call raises SystemExit there, and the rollback that follows
    can fail with a database error of its own, which is what then reaches the runner (CI saw
    a terminated task abandoned as "database unavailable" and failed at the attempt cap)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if not isinstance(current, Exception):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _checkpoint_sync(held: HeldLease, settings: Settings, workdir: Path) -> CheckpointSync | None:
    """With a storage URL set (hosts share no disk), checkpoints go to the store too; on the
    embedded default (one host, `artifact_dir`) the work folder is enough."""
    if settings.storage_url is None:
        return None
    return CheckpointSync(open_store(settings), str(held.lease.job_id), workdir, held.confirm)


def _run_attempt(
    held: HeldLease,
    recorder: ProgressRecorder,
    workdir: Path,
    settings: Settings,
    factory: sessionmaker[Session],
    sync: CheckpointSync | None = None,
) -> str:
    lease = held.lease

    def should_stop() -> bool:
        # still_held asks the database when this process may have slept past its lease.
        return held.poll_cancel() or not held.still_held() or shutdown_requested()

    aliases: dict[str, str] = {}  # filled once the job is resolved: paths -> client names
    fence = CheckpointFence(owner=lease.token.hex, may_write=held.confirm)
    try:
        with session_scope(factory) as session:
            job = jobs_repo.get_job(session, lease.job_id)
            assert job is not None
            session.expunge(job)  # read-only from here: the lease path does every write
        # Resume only from what an earlier holder committed under its lease, never from
        # whatever is newest on disk (a fenced-out worker may have written that).
        if job.checkpoint_path and job.checkpoint_step is not None:
            if sync is not None:  # possibly written on another host: fetched from the store
                fence.committed = sync.restore(job.checkpoint_path, job.checkpoint_step)
            else:
                fence.committed = checkpoint_at(Path(job.checkpoint_path), job.checkpoint_step)
        resolved, inputs = job_io.prepare(job, workdir, settings, factory)
        aliases = _model_aliases(resolved)
        hooks = PipelineHooks(progress=recorder, should_stop=should_stop)
        with fenced_checkpoints(fence):
            result = run_pipeline(resolved, workdir, hooks, inputs)
        recorder.flush()
        job_io.store_results(held, settings, result)
        recorder.clock.close()  # packaging ends once the results are stored
    except Stopped:
        recorder.flush()
        if held.cancel_requested.is_set():
            keep_committed_checkpoint(held, settings, factory)
        return lease_endings.stopped(held, fence, sync)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a typed job error
        if _terminating(exc):
            # SystemExit / KeyboardInterrupt: this process is being terminated from outside,
            # which is no fault of the job: hand it back with the attempt refunded (only a
            # death of the job's own process counts toward the cap, via its expired lease).
            # Always re-raised: the process must go on exiting.
            if not held.lost.is_set():
                lease_endings.hand_back(held, f"worker process terminated ({type(exc).__name__})")
            raise
        assert isinstance(exc, Exception)  # _terminating took every other kind
        recorder.flush()
        if held.lost.is_set():
            return "lease_lost"
        if held.cancel_requested.is_set():
            keep_committed_checkpoint(held, settings, factory)
            return lease_endings.stopped(held, fence, sync)
        if is_transient_db_error(exc):
            # The database was away longer than the writes wait: not the job's fault either.
            return lease_endings.abandon(held, f"database unavailable: {type(exc).__name__}")
        if isinstance(exc, StorageUnavailableError):
            return lease_endings.abandon(held, f"object store unavailable: {exc}")
        reference = new_reference()
        error = error_for(exc, reference=reference, aliases=aliases)
        _log_failure(lease.job_id, exc, error, reference)
        keep_committed_checkpoint(held, settings, factory)
        if not held.write(leases.finish_job, "failed", error=error, message=error["message"]):
            return "lease_lost"
        return "failed"
    if not held.write(leases.finish_job, "succeeded", message="adapter ready"):
        return "lease_lost"
    logger.info("job %s succeeded", lease.job_id)
    return "succeeded"
