"""Run one export of a succeeded job: claim it, fetch the job's result from the artifact
store, run the clo export (plain LoRA by SVD, or merged), store the result as an artifact of
the job and finish the export, every write fenced by the export's lease.

The artifact row and the export's end are one transaction taken under the job row's lock,
so it is ordered against a DELETE of the job: a job deleted meanwhile gets no artifact, and
the bytes just written are removed again.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tarfile
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clo.errors import CloError, JobError, new_reference
from clo.resolve import ResolvedJob
from persistence.artifact_store import BlobStore, StoredObject, make_key
from persistence.db import session_scope
from persistence.models import Job, JobExport
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import exports as exports_repo
from persistence.repositories.exports import ExportLease
from persistence.settings import Settings, get_settings
from persistence.storage import open_store
from worker.config import WorkerSettings, get_worker_settings
from worker.export_lease import HeldExport

logger = logging.getLogger(__name__)

SOURCE_ARTIFACTS = ("adapter.tar", "model.tar")  # api.exports.service's, in the same order
EXPORT_DIR = "exports"  # under the work root; not a job id, so job sweeps leave it alone


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_export(
    export_id: str,
    *,
    worker_id: str | None = None,
    settings: Settings | None = None,
    wsettings: WorkerSettings | None = None,
    factory: sessionmaker[Session] | None = None,
) -> str:
    """Claim and run an export; returns "not_claimable", "lease_lost", "succeeded", "failed"."""
    settings = settings or get_settings()
    wsettings = wsettings or get_worker_settings()
    if factory is None:
        from worker.runner import session_factory

        factory = session_factory()
    try:
        export_uuid = uuid.UUID(str(export_id))
    except ValueError:
        logger.error("ignoring export message with malformed id %r", export_id)
        return "not_claimable"
    with session_scope(factory) as session:
        lease = exports_repo.claim_export(
            session, export_uuid, worker_id or default_worker_id(), settings.lease_seconds
        )
    if lease is None:
        logger.info("export %s is not claimable (finished or held): skipping", export_id)
        return "not_claimable"
    scratch = wsettings.work_root / EXPORT_DIR / str(export_uuid)
    shutil.rmtree(scratch, ignore_errors=True)  # an earlier attempt's leftovers
    held = HeldExport(lease, factory, settings.lease_seconds, settings.heartbeat_seconds)
    try:
        with held:
            return _run(held, scratch, open_store(settings), factory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(held: HeldExport, scratch: Path, store: BlobStore, factory: sessionmaker[Session]) -> str:
    lease = held.lease
    aliases: dict[str, str] = {}
    try:
        with session_scope(factory) as session:
            row = session.get(JobExport, lease.export_id)
            job = session.get(Job, lease.job_id)
            if row is None or job is None:
                return "lease_lost"  # deleted with its job since the claim
            fmt, options, name = row.format, dict(row.options), row.artifact_name
            rows = [artifacts_repo.get_artifact(session, job.id, n) for n in SOURCE_ARTIFACTS]
            source_key = next((a.key for a in rows if a is not None), None)
            resolved = ResolvedJob.model_validate(job.resolved) if job.resolved else None
        if source_key is None:
            raise CloError("the job's adapter artifact was deleted", code="export_source_missing")
        base = resolved.base_model if resolved is not None else None
        if base is not None and base.source != base.name:
            aliases[base.source] = base.name
        folder = fetch_bundle(store, source_key, scratch / "source")
        out = scratch / "out"
        base_kw: dict[str, Any] = (
            {"base": base.source, "base_revision": base.revision} if base is not None else {}
        )
        report = _export(fmt, options, folder, out, base_kw)
        logger.info("export %s of job %s written: %s", lease.export_id, lease.job_id, name)
        if not held.confirm():
            return "lease_lost"
        stored = store.write_dir_archive(make_key("jobs", str(lease.job_id), name), out)
        kind = "adapter" if fmt == "lora" else "merged"
        return _finish_succeeded(factory, store, lease, name, kind, stored, report)
    except Exception as exc:  # noqa: BLE001 - every failure becomes the export's typed error
        if held.lost.is_set():
            return "lease_lost"
        reference = new_reference()
        error = JobError.from_exception(exc, reference=reference, aliases=aliases).model_dump()
        log = logger.warning if error["type"] == "user_error" else logger.error
        log(
            "export %s failed (reference %s): %s: %s",
            lease.export_id,
            reference,
            type(exc).__name__,
            exc,
            exc_info=error["type"] != "user_error",
        )
        with session_scope(factory) as session:
            if not exports_repo.finish_export(session, lease, "failed", error=error):
                return "lease_lost"
        return "failed"


def _export(
    fmt: str, options: dict[str, Any], folder: Path, out: Path, base_kw: dict[str, Any]
) -> dict[str, Any]:
    """Run the clo export; the summary the export resource shows."""
    dtype = options.get("dtype")
    if fmt == "lora":
        from clo.lora_extract import ExtractOptions, extract_lora

        opts = ExtractOptions(rank=int(options["rank"]), dtype=dtype)
        return lora_summary(extract_lora(folder, out, opts, **base_kw))
    from clo.export import merge_export

    merge_export(folder, out, dtype=dtype, **base_kw)
    meta = _read_json(out / "clo_metadata.json")
    return {"weights_dtype": meta.get("export_dtype")}


def lora_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The export resource's view of clo.lora_extract's report (api.exports ExportReport)."""
    logprob = report.get("logprob") or {}
    return {
        "weights_dtype": report["dtype"],
        "rank": report["rank"],
        "alpha": report["alpha"],
        "target_modules": report["target_modules"],
        "approximation_error": report["overall"]["relative_error"],
        "heldout_mean_abs_delta_logp": logprob.get("mean_abs_delta"),
        "heldout_max_abs_delta_logp": logprob.get("max_abs_delta"),
        "heldout_sequences": logprob.get("sequences"),
        "training_mean_abs_delta_logp": logprob.get("exact_vs_base_mean_abs_delta"),
        "not_represented": len(report["not_represented"]),
    }


def _finish_succeeded(
    factory: sessionmaker[Session],
    store: BlobStore,
    lease: ExportLease,
    name: str,
    kind: str,
    stored: StoredObject,
    report: dict[str, Any],
) -> str:
    with session_scope(factory) as session:
        # The job row lock: a DELETE of the job either ran before (no job: no artifact) or
        # waits for this commit and then deletes the artifact with the rest.
        job = session.scalars(select(Job).where(Job.id == lease.job_id).with_for_update()).first()
        done = job is not None and exports_repo.finish_export(
            session, lease, "succeeded", report=report
        )
        if done:
            artifacts_repo.add_artifact(session, lease.job_id, name, kind, stored)
    if job is None:
        store.delete(stored.key)
        return "lease_lost"
    if not done:
        return "lease_lost"
    logger.info("export %s succeeded: %s (%d bytes)", lease.export_id, name, stored.size)
    return "succeeded"


def fetch_bundle(store: BlobStore, key: str, dest: Path) -> Path:
    """Unpack the stored tar `key` into `dest` (only regular files inside it)."""
    dest.mkdir(parents=True, exist_ok=True)
    local = store.local_path(key)
    if local is not None and not local.is_file():
        raise CloError("the job's adapter is missing from the store", code="artifact_missing")
    with store.open(key) as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
        tar.extractall(dest, filter="data")
    return dest


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
