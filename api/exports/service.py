"""Export use cases: create (idempotent per job and options), list, read."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.artifacts.service import row_read
from api.deps import after_commit, parse_uuid
from api.errors import Conflict, InvalidRequest, NotFound
from api.exports.schemas import (
    DEFAULT_RANK,
    ExportCreate,
    ExportList,
    ExportOptions,
    ExportRead,
    ExportReport,
)
from api.exports.wakeup import ExportSend, wake
from api.idempotency import request_hash
from api.jobs.schemas import ErrorInfo
from persistence.models import Artifact, Job, JobExport
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import exports as exports_repo

logger = logging.getLogger(__name__)

# What an export starts from: the job's adapter bundle, or its whole model (trainable=full).
SOURCE_ARTIFACTS = ("adapter.tar", "model.tar")


def artifact_name(format: str, options: dict[str, Any]) -> str:
    """The job artifact an export writes: one name per options, so a repeat overwrites its own."""
    if format == "lora":
        return f"lora-r{options['rank']}-{options['dtype']}.tar"
    return f"merged-{options['dtype']}.tar"


def _source(session: Session, job: Job) -> Artifact:
    for name in SOURCE_ARTIFACTS:
        row = artifacts_repo.get_artifact(session, job.id, name)
        if row is not None:
            return row
    raise Conflict(
        f"job {job.id} has no {' or '.join(SOURCE_ARTIFACTS)} to export from (deleted?)",
        code="export_source_missing",
    )


def create_export(
    session: Session,
    job: Job,
    body: ExportCreate,
    *,
    send: ExportSend,
    factory: sessionmaker[Session],
) -> tuple[JobExport, bool]:
    """The export of `job` with these options, and whether a worker was (re)asked to run it:
    new, or failed before, or its artifact was deleted since. A repeat of a queued or
    running one returns it as it is (re-sending a stalled one's wake-up)."""
    # The job row lock orders this against a DELETE of the job and a concurrent same POST.
    session.refresh(job, with_for_update=True)
    if job.status != "succeeded":
        raise Conflict(
            f"job {job.id} is {job.status}; exports are made from a succeeded job's result",
            code="job_not_succeeded",
        )
    source = _source(session, job)
    if body.format == "merged" and source.name == "model.tar":
        raise InvalidRequest(
            "this job trained the full model: its model.tar is already a whole model; "
            "ask for format 'lora' to get an adapter",
            code="format_not_applicable",
            param="format",
        )
    options: dict[str, Any] = {"dtype": body.dtype}
    if body.format == "lora":
        options["rank"] = body.rank or DEFAULT_RANK
    digest = request_hash({"format": body.format, **options})
    row = exports_repo.find_by_request(session, job.id, digest)
    wake_up = partial(wake, send, factory)
    if row is None:
        row = exports_repo.create_export(
            session,
            job.id,
            format=body.format,
            options=options,
            request_hash=digest,
            artifact_name=artifact_name(body.format, options),
        )
    elif row.status == "failed" or (
        row.status == "succeeded"
        and artifacts_repo.get_artifact(session, job.id, row.artifact_name) is None
    ):
        exports_repo.requeue(session, row)
    else:
        if exports_repo.is_stalled(row):
            after_commit(session, partial(wake_up, row.id))
        return row, False
    after_commit(session, partial(wake_up, row.id))
    logger.info("export %s of job %s queued (%s)", row.id, job.id, row.format)
    return row, True


def _read(row: JobExport, artifact: Artifact | None) -> ExportRead:
    options = dict(row.options)
    return ExportRead(
        id=str(row.id),
        job_id=str(row.job_id),
        status=row.status,  # type: ignore[arg-type]
        format=row.format,  # type: ignore[arg-type]
        options=ExportOptions(rank=options.get("rank"), dtype=options["dtype"]),
        artifact_name=row.artifact_name,
        artifact=row_read(artifact) if artifact is not None and row.status == "succeeded" else None,
        report=ExportReport(**row.report) if row.report else None,
        error=ErrorInfo(**row.error) if row.error else None,
        attempt=row.attempt,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def export_read(session: Session, row: JobExport) -> ExportRead:
    return _read(row, artifacts_repo.get_artifact(session, row.job_id, row.artifact_name))


def list_exports(session: Session, job: Job) -> ExportList:
    artifacts = {a.name: a for a in artifacts_repo.list_artifacts(session, job.id)}
    rows = exports_repo.list_exports(session, job.id)
    return ExportList(data=[_read(r, artifacts.get(r.artifact_name)) for r in rows])


def get_export(session: Session, job: Job, export_id: str) -> ExportRead:
    row = exports_repo.get_export(session, job.id, parse_uuid(export_id, "export"))
    if row is None:
        raise NotFound(f"job {job.id} has no export {export_id!r}", code="export_not_found")
    return export_read(session, row)
