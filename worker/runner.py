"""Run one job: claim it, hold the lease, run the clo pipeline, record the outcome.

Every write goes through the lease (persistence.job_runs), so a worker that lost its lease
(expired, taken over, job finished elsewhere) stops and changes nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from clo.errors import CloError, Stopped
from persistence import job_runs
from persistence.artifact_store import ArtifactStore, StoredObject, make_key
from persistence.db import make_engine, make_session_factory, session_scope
from persistence.repositories import files as files_repo
from persistence.settings import Settings, get_settings
from worker import evaluation_env
from worker.config import WorkerSettings, get_worker_settings
from worker.lease import HeldLease, is_transient_db_error
from worker.progress import ProgressRecorder
from worker.shutdown import shutdown_requested
from worker.translation_cache import DbTranslationCache

logger = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _session_factory(url: str, pid: int) -> sessionmaker[Session]:
    # Keyed by pid: a forked pool child must not reuse its parent's connections.
    return make_session_factory(make_engine(url))


def session_factory() -> sessionmaker[Session]:
    return _session_factory(get_settings().db_url, os.getpid())


def job_error(type_: str, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"type": type_, "code": code, "message": message[:2000], "param": param}


def error_for(exc: BaseException) -> dict[str, Any]:
    """Map an exception to the typed job error clients see."""
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        param = ".".join(str(p) for p in errors[0]["loc"]) if errors else None
        return job_error("user_error", "invalid_spec", f"stored job spec is invalid: {exc}", param)
    if isinstance(exc, CloError):
        return job_error(
            "user_error",
            getattr(exc, "code", "invalid_input"),
            str(exc),
            getattr(exc, "param", None),
        )
    if type(exc).__name__ == "OutOfMemoryError":
        return job_error(
            "user_error",
            "out_of_memory",
            "the GPU ran out of memory; lower batch_size or max_length",
            "hyperparameters.batch_size",
        )
    return job_error(
        "system_error",
        "internal_error",
        f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
    )


def run_job(
    job_id: str,
    *,
    worker_id: str,
    settings: Settings | None = None,
    wsettings: WorkerSettings | None = None,
    factory: sessionmaker[Session] | None = None,
) -> str:
    """Claim and run a job; returns the outcome ("not_claimable", "lease_lost", or a status)."""
    settings = settings or get_settings()
    wsettings = wsettings or get_worker_settings()
    factory = factory or session_factory()
    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError:
        logger.error("ignoring message with malformed job id %r", job_id)
        return "not_claimable"
    with session_scope(factory) as session:
        lease = job_runs.claim_job(session, job_uuid, worker_id, settings.lease_seconds)
    if lease is None:
        logger.info("job %s is not claimable (finished, cancelled, or held): skipping", job_id)
        return "not_claimable"
    logger.info("job %s claimed by %s (attempt %d)", job_id, worker_id, lease.attempt)
    held = HeldLease(lease, factory, settings.lease_seconds, settings.heartbeat_seconds)
    with held:
        return _run_claimed(held, settings, wsettings, factory)


def _run_claimed(
    held: HeldLease, settings: Settings, wsettings: WorkerSettings, factory: sessionmaker[Session]
) -> str:
    from clo.pipeline import PipelineHooks, run_pipeline

    lease = held.lease
    recorder = ProgressRecorder(held, wsettings.progress_interval_seconds)

    def should_stop() -> bool:
        return held.cancel_requested.is_set() or held.lost.is_set() or shutdown_requested()

    workdir = wsettings.work_root / str(lease.job_id)
    try:
        with session_scope(factory) as session:
            job = job_runs.load_job(session, lease.job_id)
            assert job is not None
            spec_json = dict(job.spec)
            tenant_id = job.tenant_id
        env_and_spec = _prepare(spec_json, workdir, settings, factory, tenant_id)
        spec, env = env_and_spec
        hooks = PipelineHooks(progress=recorder, should_stop=should_stop)
        result = run_pipeline(spec, workdir, hooks, env)
        recorder.flush()
        _store_results(held, settings, result)
    except Stopped:
        recorder.flush()
        return _stopped(held)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a typed job error
        recorder.flush()
        if held.lost.is_set():
            return "lease_lost"
        if held.cancel_requested.is_set():
            return _stopped(held)
        if not isinstance(exc, Exception):
            # SystemExit / KeyboardInterrupt: this process is being terminated (Celery cancels
            # a late-ack task when it loses the broker), which is no fault of the job: give
            # the lease up so it resumes from its checkpoint (the attempt counts to the cap).
            _abandon(held, f"worker process terminated ({type(exc).__name__})")
            raise
        if is_transient_db_error(exc):
            # The database was away longer than the writes wait: not the job's fault either.
            return _abandon(held, f"database unavailable: {type(exc).__name__}")
        error = error_for(exc)
        log = logger.warning if error["type"] == "user_error" else logger.exception
        log("job %s failed: %s", lease.job_id, error["message"])
        held.write(job_runs.finish_job, "failed", error=error, message=error["message"])
        return "failed"
    if not held.write(job_runs.finish_job, "succeeded", message="adapter ready"):
        return "lease_lost"
    logger.info("job %s succeeded", lease.job_id)
    shutil.rmtree(workdir, ignore_errors=True)
    return "succeeded"


def _stopped(held: HeldLease) -> str:
    if held.lost.is_set():
        logger.warning("job %s: lease lost; leaving the job to its new holder", held.lease.job_id)
        return "lease_lost"
    if not held.cancel_requested.is_set() and shutdown_requested():
        return _release(held)
    held.write(
        job_runs.finish_job, "cancelled", message="cancelled on request; finished artifacts kept"
    )
    logger.info("job %s cancelled", held.lease.job_id)
    return "cancelled"


def _release(held: HeldLease) -> str:
    """Worker shutting down: hand the job back (attempt refunded) and wake another worker."""
    from worker.enqueue import enqueue_job

    reason = "worker shutting down; checkpointed, back in the queue"
    if not held.write(job_runs.release_job, reason):
        return "lease_lost"
    enqueue_job(held.lease.job_id)
    logger.info("job %s released: %s", held.lease.job_id, reason)
    return "released"


def _abandon(held: HeldLease, reason: str) -> str:
    """Give the lease up at once rather than letting it run out; the reaper takes it on."""
    held.stop_heartbeat()  # a later beat would renew what we give up
    try:
        if not held.write(job_runs.abandon_lease, reason):
            return "lease_lost"
    except Exception:  # noqa: BLE001 - the lease then simply expires
        logger.exception("job %s: could not give up the lease; it will expire", held.lease.job_id)
        return "abandoned"
    logger.warning("job %s: lease given up (%s); the reaper requeues it", held.lease.job_id, reason)
    return "abandoned"


def _prepare(
    spec_json: dict[str, Any],
    workdir: Path,
    settings: Settings,
    factory: sessionmaker[Session],
    tenant_id: uuid.UUID | None = None,
) -> tuple[Any, Any]:
    """Validate the stored spec and resolve names to local things (models, uploaded file)."""
    from clo.pipeline import PipelineEnv
    from clo.spec import JobSpec

    spec = JobSpec.model_validate(spec_json)
    base = settings.resolve_model(spec.base_model, "causal_lm")
    if base is None:
        raise _UserError(
            "model_not_allowed",
            f"base_model {spec.base_model!r} is not on the allow-list",
            "base_model",
        )
    translator_source = translator_revision = None
    if spec.seed_data.source != "parallel":
        mt = settings.resolve_model(spec.translator.model, "translator")
        if mt is None:
            raise _UserError(
                "model_not_allowed",
                f"translator model {spec.translator.model!r} is not on the allow-list",
                "translator.model",
            )
        translator_source, translator_revision = mt.source, mt.revision
    workdir.mkdir(parents=True, exist_ok=True)
    seed_file = None
    if spec.seed_data.source == "file":
        seed_file = _fetch_upload(spec.seed_data.file_id or "", workdir, settings, factory)
    judge = evaluation_env.judge_env(spec, settings)
    baseline = (
        evaluation_env.baseline_bundle(spec, tenant_id, workdir, settings, factory)
        if tenant_id is not None
        else None
    )
    env = PipelineEnv(
        base_model=base.source,
        base_model_revision=base.revision,
        translator_model=translator_source,
        translator_revision=translator_revision,
        seed_file=seed_file,
        translation_cache=DbTranslationCache(factory),
        judge=judge,
        baseline_dir=baseline[0] if baseline else None,
        baseline_name=baseline[1] if baseline else None,
    )
    return spec, env


def _fetch_upload(
    file_id: str, workdir: Path, settings: Settings, factory: sessionmaker[Session]
) -> Path:
    try:
        fid = uuid.UUID(file_id)
    except ValueError as exc:
        raise _UserError(
            "file_not_found", f"file_id {file_id!r} is not a file id", "seed_data.file_id"
        ) from exc
    with session_scope(factory) as session:
        row = files_repo.get_file(session, fid)
        key = row.key if row is not None else None
    if key is None:
        raise _UserError(
            "file_not_found", f"uploaded file {file_id} no longer exists", "seed_data.file_id"
        )
    target = workdir / "seed_upload.jsonl"
    if not target.exists():
        tmp = target.with_suffix(".partial")
        with ArtifactStore(settings.artifact_root).open(key) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(target)
    return target


def _store_results(held: HeldLease, settings: Settings, result: Any) -> None:
    """Put the bundle (and merged model) in the artifact store and register them."""
    store = ArtifactStore(settings.artifact_root)
    job = str(held.lease.job_id)
    # trainable=full has no adapter: its bundle is the whole model.
    first = "adapter.tar" if result.bundle_kind == "adapter" else "model.tar"
    uploads: list[tuple[str, str, Path]] = [(first, result.bundle_kind, result.bundle_dir)]
    if result.merged_dir is not None:
        uploads.append(("merged.tar", "merged", result.merged_dir))

    def register(name: str, kind: str, stored: StoredObject) -> None:
        held.write(
            job_runs.record_artifact,
            name=name,
            kind=kind,
            key=stored.key,
            size=stored.size,
            sha256=stored.sha256,
        )

    for name, kind, folder in uploads:
        register(name, kind, store.write_dir_archive(make_key("jobs", job, name), folder))
    if result.evaluation is not None:
        import json

        data = json.dumps(result.evaluation, indent=2, ensure_ascii=False).encode()
        key = make_key("jobs", job, "evaluation.json")
        register("evaluation.json", "report", store.write_bytes(key, data))
    held.write(
        job_runs.record_results,
        metrics_summary=result.metrics_summary,
        evaluation=result.evaluation,
    )
    if held.lost.is_set():
        raise Stopped("lease lost while storing results")


class _UserError(CloError):
    def __init__(self, code: str, message: str, param: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param
