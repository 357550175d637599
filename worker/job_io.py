"""A claimed job's I/O: its stored resolution and local inputs before the run, its bundles,
report and metrics into the artifact store and the database after it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from clo.errors import CloError, Stopped
from clo.pipeline import PipelineResult, RunInputs
from clo.resolve import ResolvedJob, resolve_job
from clo.spec import JobSpec
from persistence.artifact_store import StoredObject, make_key
from persistence.db import session_scope
from persistence.models import Job
from persistence.repositories import leases
from persistence.settings import Settings
from persistence.storage import open_store
from service.catalog import ServiceCatalog
from worker import evaluation_env
from worker.base_cache import DbBaseCache
from worker.lease import HeldLease
from worker.summaries import job_summary
from worker.translation_cache import DbTranslationCache


def prepare(
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


def store_results(held: HeldLease, settings: Settings, result: PipelineResult) -> None:
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
