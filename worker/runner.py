"""Run one job: claim it, hold the lease, run the clo pipeline, record the outcome.

Every write goes through the lease (repositories.leases), so a worker that lost its lease
(expired, taken over, job finished elsewhere) stops and changes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from clo.checkpoint import CheckpointFence, checkpoint_at, fenced_checkpoints, step_of
from clo.errors import CloError, JobError, Stopped, new_reference
from clo.pipeline import PipelineHooks, PipelineResult, RunInputs, run_pipeline
from clo.resolve import ResolvedJob, resolve_job
from clo.spec import JobSpec
from persistence.artifact_store import StorageUnavailableError, StoredObject, make_key
from persistence.db import make_engine, make_session_factory, session_scope
from persistence.logs import bind_job
from persistence.models import Job, utcnow
from persistence.repositories import events as events_repo
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import leases
from persistence.settings import Settings, get_settings
from persistence.storage import open_store
from service.catalog import ServiceCatalog
from worker import admission, evaluation_env, metrics, work_folders
from worker.base_cache import DbBaseCache
from worker.checkpoint_artifacts import keep_committed_checkpoint
from worker.checkpoint_store import CheckpointSync
from worker.config import WorkerSettings, get_worker_settings
from worker.lease import HeldLease, is_transient_db_error
from worker.progress import ProgressRecorder
from worker.shutdown import shutdown_requested
from worker.summaries import job_summary
from worker.translation_cache import DbTranslationCache

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
                _hand_back(held, f"worker process terminated ({type(exc).__name__})")
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
        resolved, inputs = _prepare(job, workdir, settings, factory)
        aliases = _model_aliases(resolved)
        hooks = PipelineHooks(progress=recorder, should_stop=should_stop)
        with fenced_checkpoints(fence):
            result = run_pipeline(resolved, workdir, hooks, inputs)
        recorder.flush()
        _store_results(held, settings, result)
        recorder.clock.close()  # packaging ends once the results are stored
    except Stopped:
        recorder.flush()
        if held.cancel_requested.is_set():
            keep_committed_checkpoint(held, settings, factory)
        return _stopped(held, fence, sync)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a typed job error
        if _terminating(exc):
            # SystemExit / KeyboardInterrupt: this process is being terminated from outside,
            # which is no fault of the job: hand it back with the attempt refunded (only a
            # death of the job's own process counts toward the cap, via its expired lease).
            # Always re-raised: the process must go on exiting.
            if not held.lost.is_set():
                _hand_back(held, f"worker process terminated ({type(exc).__name__})")
            raise
        assert isinstance(exc, Exception)  # _terminating took every other kind
        recorder.flush()
        if held.lost.is_set():
            return "lease_lost"
        if held.cancel_requested.is_set():
            keep_committed_checkpoint(held, settings, factory)
            return _stopped(held, fence, sync)
        if is_transient_db_error(exc):
            # The database was away longer than the writes wait: not the job's fault either.
            return _abandon(held, f"database unavailable: {type(exc).__name__}")
        if isinstance(exc, StorageUnavailableError):
            return _abandon(held, f"object store unavailable: {exc}")
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


def _stopped(held: HeldLease, fence: CheckpointFence, sync: CheckpointSync | None) -> str:
    if held.lost.is_set():
        logger.warning("job %s: lease lost; leaving the job to its new holder", held.lease.job_id)
        return "lease_lost"
    if not held.cancel_requested.is_set() and shutdown_requested():
        return _release(held, fence, sync)
    if not held.write(
        leases.finish_job, "cancelled", message="cancelled on request; finished artifacts kept"
    ):
        return "lease_lost"
    logger.info("job %s cancelled", held.lease.job_id)
    return "cancelled"


def _release(held: HeldLease, fence: CheckpointFence, sync: CheckpointSync | None) -> str:
    """Worker shutting down: commit the stop checkpoint, hand the job back (attempt refunded)
    and wake another worker."""
    from worker.enqueue import enqueue_job

    # The stop checkpoint is the newest: the next holder resumes from it (on another host
    # only once it is in the store; else the last committed one stays the resume point).
    if fence.saved is not None and (sync is None or sync.push(fence.saved)):
        step = step_of(fence.saved)
        if not held.write(leases.record_checkpoint, str(fence.saved.parent), step):
            return "lease_lost"
        if sync is not None:
            sync.prune(fence.saved)
    reason = "worker shutting down; checkpointed, back in the queue"
    if not held.write(leases.release_job, reason):
        return "lease_lost"
    enqueue_job(held.lease.job_id)
    logger.info("job %s released: %s", held.lease.job_id, reason)
    return "released"


def _hand_back(held: HeldLease, reason: str) -> str:
    """The process is going away: release the job (attempt refunded; the reaper re-sends its
    wake-up, as the broker may be what is gone), or give the lease up when a cancel is
    pending (release refuses then, and the reaper ends the job cancelled)."""
    held.handed_back = True
    held.stop_heartbeat()
    try:
        if held.write(leases.release_job, reason):
            logger.warning("job %s released: %s", held.lease.job_id, reason)
            return "released"
    except Exception:  # noqa: BLE001 - the lease then simply expires
        logger.exception("job %s: could not release the job; its lease expires", held.lease.job_id)
        return "abandoned"
    return _abandon(held, reason)


def _abandon(held: HeldLease, reason: str) -> str:
    """Give the lease up at once rather than letting it run out; the reaper takes it on."""
    held.stop_heartbeat()  # a later beat would renew what we give up
    try:
        if not held.write(leases.abandon_lease, reason):
            return "lease_lost"
    except Exception:  # noqa: BLE001 - the lease then simply expires
        logger.exception("job %s: could not give up the lease; it will expire", held.lease.job_id)
        return "abandoned"
    logger.warning("job %s: lease given up (%s); the reaper requeues it", held.lease.job_id, reason)
    return "abandoned"


def _prepare(
    job: Job, workdir: Path, settings: Settings, factory: sessionmaker[Session]
) -> tuple[ResolvedJob, RunInputs]:
    """The job as resolved at submission, and the local inputs its run needs (I/O only)."""
    resolved = stored_resolution(job, settings, factory)
    if resolved.spec.gpus > settings.worker_gpus:
        # resolved where workers owned more (or routed here by mistake): the training stage
        # would start more ranks than this node has GPUs
        raise CloError(
            f"gpus {resolved.spec.gpus} is more than this worker owns "
            f"({settings.worker_gpus}, CLO_WORKER_GPUS)",
            code="too_many_gpus",
            param="gpus",
        )
    workdir.mkdir(parents=True, exist_ok=True)
    seed_file = None
    if resolved.seed_file is not None:
        seed_file = _fetch_upload(resolved.seed_file.key, workdir, settings)
    inputs = RunInputs(
        seed_file=seed_file,
        translation_cache=DbTranslationCache(factory),
        translator_backend=settings.translator_backend,
        translator_compute_type=settings.translator_compute_type,
        base_cache=DbBaseCache(factory),
        judge_api_key=evaluation_env.judge_api_key(resolved, settings),
        baseline_dir=evaluation_env.baseline_bundle(resolved, workdir, settings),
    )
    return resolved, inputs


def stored_resolution(job: Job, settings: Settings, factory: sessionmaker[Session]) -> ResolvedJob:
    """The ResolvedJob stored with the job; rows from before it existed are resolved now."""
    if job.resolved is not None:
        return ResolvedJob.model_validate(job.resolved)
    spec = JobSpec.model_validate(job.spec)
    with session_scope(factory) as session:
        return resolve_job(spec, ServiceCatalog(session, settings, job.tenant_id))


def _fetch_upload(key: str, workdir: Path, settings: Settings) -> Path:
    """Copy the uploaded seed file out of the artifact store (once per job)."""
    target = workdir / "seed_upload.jsonl"
    if target.exists():
        return target
    store = open_store(settings)
    if not store.exists(key):
        raise CloError(
            "the uploaded seed file no longer exists; upload it again",
            code="file_not_found",
            param="seed_data.file_id",
        )
    tmp = target.with_suffix(".partial")
    with store.open(key) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    tmp.replace(target)
    return target


def _store_results(held: HeldLease, settings: Settings, result: PipelineResult) -> None:
    """Put the bundle (and merged model) in the artifact store and register them."""
    store = open_store(settings)
    job = str(held.lease.job_id)
    # trainable=full has no adapter: its bundle is the whole model.
    first = "adapter.tar" if result.bundle_kind == "adapter" else "model.tar"
    uploads: list[tuple[str, str, Path]] = [(first, result.bundle_kind, result.bundle_dir)]
    if result.merged_dir is not None:
        uploads.append(("merged.tar", "merged", result.merged_dir))

    def register(name: str, kind: str, stored: StoredObject) -> None:
        held.write(leases.record_artifact, name, kind, stored)

    def confirm_held() -> None:
        # The store is outside the fenced UPDATEs: a worker that lost its lease (paused past
        # it, say) must not overwrite what the new holder stores under the same key.
        if not held.confirm():
            raise Stopped("lease lost before storing results")

    for name, kind, folder in uploads:
        confirm_held()
        register(name, kind, store.write_dir_archive(make_key("jobs", job, name), folder))
    if result.evaluation is not None:
        data = json.dumps(result.evaluation, indent=2, ensure_ascii=False).encode()
        key = make_key("jobs", job, "evaluation.json")
        confirm_held()
        register("evaluation.json", "report", store.write_bytes(key, data))
    held.write(
        leases.record_results,
        metrics_summary=job_summary(result),
        evaluation=result.evaluation,
    )
    if held.lost.is_set():
        raise Stopped("lease lost while storing results")
