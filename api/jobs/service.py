"""Job use cases: validate and create, read, list, cancel, events, metrics, evaluation.

Services flush, never commit: the request dependency owns the transaction.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from datetime import datetime
from functools import lru_cache, partial

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.deps import after_commit
from api.enqueue import JobEnqueuer
from api.errors import Conflict, InvalidRequest, NotFound, TooManyRequests
from api.jobs.schemas import (
    ArtifactRead,
    ErrorInfo,
    EvaluationRead,
    EventList,
    EventRead,
    JobList,
    JobRead,
    MetricPoint,
    MetricsRead,
    Progress,
)
from clo.errors import CloError
from clo.languages import UnknownLanguageError, get_language, recommended_trainable
from clo.seed import builtin_parallel, builtin_seed
from clo.spec import MIN_DATA_SIZE, JobSpec
from persistence.models import Job, JobEvent, Tenant
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo
from persistence.repositories import files as files_repo
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import metrics as metrics_repo
from persistence.repositories import tenants as tenants_repo
from persistence.settings import Settings

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30


def create_job(
    session: Session,
    tenant: Tenant,
    spec: JobSpec,
    *,
    settings: Settings,
    enqueuer: JobEnqueuer,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Validate, store and (after commit) enqueue a job; (job, created) for idempotent retries."""
    request_hash = _hash_spec(spec)
    if idempotency_key:
        existing = jobs_repo.get_job_by_idempotency_key(session, tenant.id, idempotency_key)
        if existing is not None:
            return _same_request(existing, request_hash), False
    stored_spec = validate_spec(session, tenant, spec, settings)
    tenants_repo.lock_tenant(session, tenant.id)  # serialise the concurrency check per tenant
    active = jobs_repo.count_active_jobs(session, tenant.id)
    if active >= settings.max_concurrent_jobs_per_tenant:
        raise TooManyRequests(
            f"{active} jobs are queued or running; the limit is "
            f"{settings.max_concurrent_jobs_per_tenant} per tenant. Retry when one finishes.",
            code="concurrent_job_limit",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    try:
        with session.begin_nested():
            job = jobs_repo.create_job(
                session,
                tenant_id=tenant.id,
                spec=stored_spec,
                max_attempts=settings.max_attempts,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
            )
    except IntegrityError:
        # A concurrent retry with the same Idempotency-Key won the insert.
        existing = jobs_repo.get_job_by_idempotency_key(session, tenant.id, idempotency_key or "")
        if existing is None:
            raise
        return _same_request(existing, request_hash), False
    events_repo.append_event(
        session,
        job.id,
        "queued",
        f"job accepted: {job.method} {job.base_model} -> "
        f"{job.target_language}, {job.data_size} examples",
    )
    after_commit(session, partial(enqueuer, str(job.id)))
    logger.info("job created", extra={"job_id": str(job.id), "tenant": tenant.name})
    return job, True


def _hash_spec(spec: JobSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _same_request(job: Job, request_hash: str) -> Job:
    if job.request_hash != request_hash:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a new job",
            code="idempotency_key_reused",
            param="Idempotency-Key",
        )
    return job


@lru_cache(maxsize=1)
def _builtin_seed_size() -> int:
    return len(builtin_seed())


def validate_spec(session: Session, tenant: Tenant, spec: JobSpec, settings: Settings) -> dict:
    """Everything JobSpec cannot check alone; returns the spec to store (language normalised)."""
    try:
        language = get_language(spec.target_language)
    except UnknownLanguageError as exc:
        raise InvalidRequest(str(exc), code="unknown_language", param="target_language") from None
    models = settings.allowed_models()
    if settings.resolve_model(spec.base_model, "causal_lm") is None:
        names = sorted(n for n, e in models.items() if e.kind == "causal_lm")
        raise InvalidRequest(
            f"base_model {spec.base_model!r} is not on the allow-list; allowed: "
            f"{', '.join(names) or 'none configured'} (GET /v1/models)",
            code="model_not_allowed",
            param="base_model",
        )
    source = spec.seed_data.source
    if source != "parallel" and settings.resolve_model(spec.translator.model, "translator") is None:
        names = sorted(n for n, e in models.items() if e.kind == "translator")
        raise InvalidRequest(
            f"translator.model {spec.translator.model!r} is not on the allow-list; allowed: "
            f"{', '.join(names) or 'none configured'} (GET /v1/models)",
            code="model_not_allowed",
            param="translator.model",
        )
    available = _seed_size(session, tenant, spec, language.code)
    if available is not None and spec.data_size > available:
        raise InvalidRequest(
            f"data_size {spec.data_size} is larger than the {available} examples in the "
            f"{source} seed set; ask for at most {available}",
            code="data_size_too_large",
            param="data_size",
        )
    if spec.evaluation.enabled and spec.data_size - spec.evaluation.heldout_size < MIN_DATA_SIZE:
        raise InvalidRequest(
            f"evaluation.heldout_size {spec.evaluation.heldout_size} leaves fewer than "
            f"{MIN_DATA_SIZE} of the {spec.data_size} examples for training",
            code="heldout_too_large",
            param="evaluation.heldout_size",
        )
    _validate_evaluation(session, tenant, spec, settings)
    stored = spec.model_dump(mode="json")
    stored["target_language"] = language.code
    if stored["trainable"] is None:
        stored["trainable"] = recommended_trainable(language.code)
    return stored


def _validate_evaluation(
    session: Session, tenant: Tenant, spec: JobSpec, settings: Settings
) -> None:
    """The judge must be configured here; a baseline must be this tenant's succeeded job."""
    judge = spec.evaluation.judge
    if judge != "none" and spec.evaluation.enabled:
        missing = not settings.judge_model or (judge == "openai" and not settings.judge_url)
        if judge == "local" and not missing:
            missing = settings.resolve_model(settings.judge_model or "", "causal_lm") is None
        if missing:
            raise InvalidRequest(
                f"evaluation.judge {judge!r} is not configured on this service; ask the "
                "operator to set CLO_JUDGE_MODEL"
                + (" and CLO_JUDGE_URL" if judge == "openai" else " to an allow-listed model")
                + ", or use judge 'none'",
                code="judge_not_configured",
                param="evaluation.judge",
            )
    baseline_id = spec.evaluation.baseline_job_id
    if baseline_id is None:
        return
    baseline = _tenant_job(session, tenant, baseline_id)
    if baseline is None:
        raise InvalidRequest(
            f"baseline job {baseline_id!r} not found",
            code="baseline_job_not_found",
            param="evaluation.baseline_job_id",
        )
    if baseline.status != "succeeded":
        raise InvalidRequest(
            f"baseline job {baseline_id} is {baseline.status}; only a succeeded job has a "
            "model to compare against",
            code="baseline_job_not_succeeded",
            param="evaluation.baseline_job_id",
        )
    if baseline.base_model != spec.base_model:
        raise InvalidRequest(
            f"baseline job {baseline_id} was trained on {baseline.base_model!r}, not "
            f"{spec.base_model!r}; its adapter only fits its own base model",
            code="baseline_job_other_model",
            param="evaluation.baseline_job_id",
        )


def _seed_size(session: Session, tenant: Tenant, spec: JobSpec, lang: str) -> int | None:
    """Examples available from the chosen seed source; None when it cannot be known up front."""
    source = spec.seed_data.source
    if source == "builtin":
        return _builtin_seed_size()
    if source == "parallel":
        try:
            return len(builtin_parallel(lang))
        except CloError as exc:
            raise InvalidRequest(
                str(exc), code="no_parallel_data", param="seed_data.source"
            ) from None
    if source == "file":
        file_id = _as_uuid(spec.seed_data.file_id or "")
        row = files_repo.get_file_for_tenant(session, tenant.id, file_id) if file_id else None
        if row is None:
            raise InvalidRequest(
                f"file {spec.seed_data.file_id!r} not found; upload it with POST /v1/files",
                code="file_not_found",
                param="seed_data.file_id",
            )
        return row.n_examples
    return None  # oasst1: selected by the worker; a short selection fails the job clearly


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _tenant_job(session: Session, tenant: Tenant, job_id: str) -> Job | None:
    parsed = _as_uuid(job_id)
    return jobs_repo.get_job_for_tenant(session, tenant.id, parsed) if parsed else None


def to_read(session: Session, job: Job) -> JobRead:
    artifacts = [
        ArtifactRead(
            name=a.name,
            kind=a.kind,
            size=a.size,
            sha256=a.sha256,
            created_at=a.created_at,
            download_url=f"/v1/jobs/{job.id}/artifacts/{a.name}",
        )
        for a in artifacts_repo.list_artifacts(session, job.id)
    ]
    return JobRead(
        id=str(job.id),
        status=job.status,
        stage=job.stage,
        base_model=job.base_model,
        target_language=job.target_language,
        method=job.method,
        data_size=job.data_size,
        progress=Progress(
            step=job.step,
            total_steps=job.total_steps,
            percent=job.percent,
            eta_seconds=job.eta_seconds,
        ),
        queue_position=jobs_repo.queue_position(session, job) if job.status == "queued" else None,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        error=ErrorInfo.model_validate(job.error) if job.error else None,
        metrics_summary=job.metrics_summary,
        evaluation_ready=job.evaluation is not None,
        artifacts=artifacts,
        spec=job.spec,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        cancel_requested_at=job.cancel_requested_at,
    )


def encode_cursor(job: Job) -> str:
    raw = json.dumps({"c": job.created_at.isoformat(), "i": str(job.id)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        return datetime.fromisoformat(data["c"]), uuid.UUID(data["i"])
    except (ValueError, KeyError, TypeError):
        raise InvalidRequest(
            "cursor is not one this API returned; pass next_cursor from the previous page",
            code="invalid_cursor",
            param="cursor",
        ) from None


def list_jobs(
    session: Session,
    tenant: Tenant,
    *,
    limit: int,
    cursor: str | None,
    filters: jobs_repo.JobFilters,
) -> JobList:
    before = decode_cursor(cursor) if cursor else None
    rows = jobs_repo.list_jobs(session, tenant.id, limit=limit + 1, filters=filters, before=before)
    page, has_more = rows[:limit], len(rows) > limit
    return JobList(
        data=[to_read(session, job) for job in page],
        next_cursor=encode_cursor(page[-1]) if has_more and page else None,
        has_more=has_more,
    )


def cancel_job(session: Session, job: Job) -> Job:
    """Cancel: immediate for a queued job; a running job's worker stops within one step."""
    before = job.status
    job = jobs_repo.request_cancel(session, job)
    if job.status != before:
        message = "cancelled before it started" if job.status == "cancelled" else "cancel requested"
        events_repo.append_event(session, job.id, job.status, message)
        logger.info("job %s", job.status, extra={"job_id": str(job.id)})
    return job


def list_events(session: Session, job: Job, after: int, limit: int) -> EventList:
    rows = events_repo.list_events(session, job.id, after=after, limit=limit)
    return EventList(data=[event_read(e) for e in rows], last_id=rows[-1].seq if rows else after)


def event_read(event: JobEvent) -> EventRead:
    return EventRead(
        id=event.seq,
        type=event.type,
        message=event.message,
        data=event.data,
        created_at=event.created_at,
    )


def get_metrics(session: Session, job: Job) -> MetricsRead:
    curves = metrics_repo.metric_curves(session, job.id)
    return MetricsRead(
        job_id=str(job.id),
        curves={
            name: [MetricPoint(step=p["step"], value=p["value"]) for p in points]
            for name, points in curves.items()
        },
        summary=job.metrics_summary,
    )


def get_evaluation(job: Job) -> EvaluationRead:
    if job.evaluation is None:
        raise NotFound(
            f"job {job.id} has no evaluation report yet (status {job.status}"
            + (f", stage {job.stage})" if job.stage else ")"),
            code="evaluation_not_ready",
        )
    return EvaluationRead(job_id=str(job.id), report=job.evaluation)
