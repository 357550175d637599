"""The OpenAI-compatible use cases: each calls the native job service (or a repository read
it lacks, newest-first events) and maps the result; nothing is validated or stored here."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.enqueue import JobEnqueuer
from api.errors import ApiError, InvalidRequest, NotFound
from api.files import service as files_service
from api.jobs import service as jobs_service
from api.openai_compat import mapping
from api.openai_compat.schemas import (
    FineTuningJob,
    FineTuningJobCheckpointList,
    FineTuningJobCreate,
    FineTuningJobEventList,
    FineTuningJobList,
)
from api.pagination import CursorCodec
from clo.spec import JobSpec
from persistence.models import Job, Tenant
from persistence.repositories import events as events_repo
from persistence.repositories import jobs as jobs_repo
from persistence.settings import Settings
from service.catalog import as_uuid


def create_job(
    session: Session,
    tenant: Tenant,
    body: FineTuningJobCreate,
    *,
    settings: Settings,
    enqueuer: JobEnqueuer,
    idempotency_key: str | None,
) -> FineTuningJob:
    """Translate, validate as a native spec, create through the job service, map back."""
    examples = None
    if mapping.needs_file_size(body):  # data_size defaults to the file's examples
        examples = _file_examples(session, tenant, body.training_file)
    translation = mapping.to_native(body, examples)
    try:
        spec = JobSpec.model_validate(translation.spec)
    except ValidationError as exc:
        raise RequestValidationError(_renamed(exc.errors(), translation)) from None
    try:
        job, created = jobs_service.create_job(
            session,
            tenant,
            spec,
            settings=settings,
            enqueuer=enqueuer,
            idempotency_key=idempotency_key,
        )
    except ApiError as exc:
        exc.param = translation.param(exc.param)  # seed_data.file_id -> training_file ...
        raise
    return mapping.job_out(jobs_service.to_read(session, job, new=created), tenant.name)


def _file_examples(session: Session, tenant: Tenant, file_id: str) -> int:
    """Examples in the tenant's file; 422 naming training_file for an unknown one."""
    parsed = as_uuid(file_id)
    try:
        if parsed is not None:
            return files_service.get_file(session, tenant, parsed).n_examples
    except NotFound:
        pass
    raise InvalidRequest(
        f"training_file {file_id[:64]!r} not found; upload it with POST /v1/files",
        code="file_not_found",
        param="training_file",
    )


def _renamed(errors: list[Any], translation: mapping.Translation) -> list[dict[str, Any]]:
    """Pydantic errors of the native spec with locations named as the request named them."""
    out = []
    for error in errors:
        path = ".".join(str(part) for part in error.get("loc", ()))
        renamed = translation.param(path)
        out.append({**error, "loc": ("body", renamed) if renamed else ("body",)})
    return out


def get_job(session: Session, tenant: Tenant, job: Job) -> FineTuningJob:
    return mapping.job_out(jobs_service.to_read(session, job), tenant.name)


def cancel_job(
    session: Session,
    tenant: Tenant,
    job: Job,
    settings: Settings | None = None,
    enqueuer: JobEnqueuer | None = None,
) -> FineTuningJob:
    cancelled = jobs_service.cancel_job(session, job, settings=settings, enqueuer=enqueuer)
    return mapping.job_out(jobs_service.to_read(session, cancelled), tenant.name)


def list_jobs(
    session: Session, tenant: Tenant, *, after: str | None, limit: int, cursors: CursorCodec
) -> FineTuningJobList:
    """Newest first; `after` is the id of the last job of the previous page."""
    cursor = None
    if after is not None:
        parsed = as_uuid(after)
        mark = jobs_repo.get_job_for_tenant(session, tenant.id, parsed) if parsed else None
        if mark is None:
            raise InvalidRequest(
                f"after {after[:64]!r} is not one of your jobs; pass the last id of the "
                "previous page",
                code="invalid_cursor",
                param="after",
            )
        cursor = cursors.encode(mark)
    page = jobs_service.list_jobs(
        session,
        tenant,
        limit=limit,
        cursor=cursor,
        filters=jobs_repo.JobFilters(),
        cursors=cursors,
    )
    return FineTuningJobList(
        data=[mapping.job_out(job, tenant.name) for job in page.data], has_more=page.has_more
    )


def list_events(
    session: Session, job: Job, *, after: str | None, limit: int
) -> FineTuningJobEventList:
    """Newest first, as OpenAI lists them; `after` is the id of the last event of a page."""
    job_id = str(job.id)
    before = mapping.seq_of(after, "ftevent", job_id) if after is not None else None
    rows = events_repo.list_events_newest_first(session, job.id, before=before, limit=limit + 1)
    data = [mapping.event_out(job_id, jobs_service.event_read(e)) for e in rows[:limit]]
    return FineTuningJobEventList(data=data, has_more=len(rows) > limit)


def list_checkpoints(
    session: Session, job: Job, *, after: str | None, limit: int
) -> FineTuningJobCheckpointList:
    """The checkpoints the job saved, newest first, with the training loss at each step."""
    read = jobs_service.to_read(session, job)
    before = mapping.seq_of(after, "ftckpt", read.id) if after is not None else None
    rows = events_repo.list_events_newest_first(
        session, job.id, before=before, limit=limit + 1, types=("checkpoint",)
    )
    curve = jobs_service.get_metrics(session, job).curves.get("loss", [])
    loss_at = {point.step: point.value for point in curve}
    data = [mapping.checkpoint_out(read, jobs_service.event_read(e), loss_at) for e in rows[:limit]]
    return FineTuningJobCheckpointList(
        data=data,
        has_more=len(rows) > limit,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )
