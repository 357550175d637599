"""Comparison use cases: create one job per run on shared data, read statuses and the report.

Every job of a comparison is created in the request's one transaction, so a comparison is
stored whole or not at all. Services flush, never commit.
"""

from __future__ import annotations

import copy
import logging
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import idempotency
from api.comparisons.schemas import (
    DEFAULT_RUNS,
    ComparisonCreate,
    ComparisonList,
    ComparisonRead,
    ComparisonSummary,
    RunCreate,
    RunRead,
)
from api.enqueue import JobEnqueuer
from api.errors import InvalidRequest
from api.jobs import service as jobs_service
from api.pagination import CursorCodec
from clo.errors import CloError
from clo.evaluate.compare import compare_reports
from clo.evaluate.report import EvaluationReport
from clo.spec import JobSpec
from persistence.models import ACTIVE_STATUSES, Comparison, Job, Tenant
from persistence.repositories import comparisons as comparisons_repo
from persistence.repositories import tenants as tenants_repo
from persistence.settings import Settings

logger = logging.getLogger(__name__)

# Set per run, never shared: a base that names them is ambiguous.
RUN_ONLY_FIELDS = ("method", "sft_variant")
RUN_FIELDS = ("method", "sft_variant", "trainable")


def create_comparison(
    session: Session,
    tenant: Tenant,
    body: ComparisonCreate,
    *,
    settings: Settings,
    enqueuer: JobEnqueuer,
    idempotency_key: str | None,
) -> tuple[Comparison, bool]:
    """Validate every run, then store the comparison and its jobs; (row, created)."""
    runs = list(body.runs) if body.runs is not None else list(DEFAULT_RUNS)
    request = {
        "name": body.name,
        "base": body.base,
        "runs": [r.model_dump(mode="json") for r in runs],
    }
    request_hash = idempotency.request_hash(request)
    if idempotency_key:
        existing = comparisons_repo.get_comparison_by_idempotency_key(
            session, tenant.id, idempotency_key
        )
        if existing is not None:
            return idempotency.same_request(existing, request_hash, "comparison"), False
    _check_labels(runs)
    comparison_id = uuid.uuid4()
    specs = [_run_spec(body.base, run, i, comparison_id) for i, run in enumerate(runs)]
    for i, spec in enumerate(specs):
        _validated(lambda s=spec: jobs_service.resolve_spec(session, tenant, s, settings), i, runs)
    tenants_repo.lock_tenant(session, tenant.id)
    jobs_service.check_queued_bound(session, tenant, settings, adding=len(specs))
    try:
        # The comparison first, in a savepoint: a concurrent retry with the same key loses
        # here, before it has created any job.
        with session.begin_nested():
            row = comparisons_repo.create_comparison(
                session,
                comparison_id=comparison_id,
                tenant_id=tenant.id,
                name=body.name,
                runs=[],
                request=request,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
            )
    except IntegrityError:
        existing = comparisons_repo.get_comparison_by_idempotency_key(
            session, tenant.id, idempotency_key or ""
        )
        if existing is None:
            raise
        return idempotency.same_request(existing, request_hash, "comparison"), False
    stored = []
    for i, (run, spec) in enumerate(zip(runs, specs, strict=True)):
        job, _ = _validated(
            lambda s=spec: jobs_service.create_job(
                session, tenant, s, settings=settings, enqueuer=enqueuer, idempotency_key=None
            ),
            i,
            runs,
        )
        stored.append({"label": run.label, "job_id": str(job.id)})
    row.runs = stored
    session.flush()
    logger.info(
        "comparison created with %d jobs", len(stored), extra={"comparison_id": str(row.id)}
    )
    return row, True


def _check_labels(runs: list[RunCreate]) -> None:
    seen: set[str] = set()
    for i, run in enumerate(runs):
        if run.label in seen:
            raise InvalidRequest(
                f"label {run.label!r} is used by an earlier run; give each run its own label",
                code="duplicate_label",
                param=f"runs[{i}].label",
            )
        seen.add(run.label)


def _run_spec(base: dict[str, Any], run: RunCreate, i: int, comparison_id: uuid.UUID) -> JobSpec:
    """base + the run's method and overrides, validated as a job spec."""
    for name in RUN_ONLY_FIELDS:
        if name in base:
            raise InvalidRequest(
                f"{name} differs between runs: set it in each of runs[] instead of base",
                code="validation_error",
                param=f"base.{name}",
            )
    merged = copy.deepcopy(base)
    merged["method"] = run.method
    merged["sft_variant"] = run.sft_variant
    if run.trainable is not None:
        merged["trainable"] = run.trainable
    if run.hyperparameters:
        shared = merged.get("hyperparameters")
        if shared is not None and not isinstance(shared, dict):
            raise InvalidRequest("hyperparameters must be an object", param="base.hyperparameters")
        merged["hyperparameters"] = {**(shared or {}), **run.hyperparameters}
    metadata = merged.get("metadata")
    if metadata is None or isinstance(metadata, dict):
        merged["metadata"] = {
            **(metadata or {}),
            "comparison_id": str(comparison_id),
            "comparison_run": run.label,
        }
    try:
        return JobSpec.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        param = _owner(list(error["loc"]) or _named_field(message), i, run)
        raise InvalidRequest(f"{param}: {message}", code="validation_error", param=param) from None


def _named_field(message: str) -> list[str]:
    """For a spec-level rule ("sft_variant only applies..."), the field its message names."""
    hits = [(message.find(n), n) for n in JobSpec.model_fields if n in message]
    return [min(hits)[1]] if hits else []


def _owner(loc: list[Any], i: int, run: RunCreate) -> str:
    """Name a spec field by where the client wrote it: in runs[i] or in base."""
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
    if not loc:
        return f"runs[{i}]"
    if loc[0] in RUN_FIELDS or (
        loc[0] == "hyperparameters" and len(loc) > 1 and loc[1] in run.hyperparameters
    ):
        return f"runs[{i}]{path}"
    return f"base{path}"


def _validated(call: Any, i: int, runs: list[RunCreate]) -> Any:
    """Run a job-service call, naming the field of an error as runs[i].x or base.x."""
    try:
        return call()
    except InvalidRequest as exc:
        if exc.param:
            loc: list[Any] = exc.param.split(".")
            exc.param = _owner(loc, i, runs[i])
        raise


# ---- reading -----------------------------------------------------------------------------


def _jobs(session: Session, row: Comparison) -> list[tuple[dict[str, Any], Job | None]]:
    ids = [uuid.UUID(r["job_id"]) for r in row.runs]
    found = comparisons_repo.jobs_of(session, row.tenant_id, ids)
    return [(r, found.get(uuid.UUID(r["job_id"]))) for r in row.runs]


def _status(jobs: list[Job | None]) -> str:
    if any(j is not None and j.status in ACTIVE_STATUSES for j in jobs):
        return "running"
    if jobs and all(j is not None and j.status == "succeeded" for j in jobs):
        return "succeeded"
    return "failed"


def _run_read(run: dict[str, Any], job: Job | None) -> RunRead:
    if job is None:  # only if a job row was removed behind the API's back
        return RunRead(
            label=run["label"],
            job_id=run["job_id"],
            method="unknown",
            status="missing",
            evaluation_ready=False,
        )
    spec = job.spec or {}
    return RunRead(
        label=run["label"],
        job_id=str(job.id),
        method=job.method,
        sft_variant=spec.get("sft_variant") if job.method == "sft" else None,
        trainable=spec.get("trainable"),
        status=job.status,
        stage=job.stage,
        percent=job.percent,
        error=job.error,
        metrics={k: v for k, v in (job.metrics_summary or {}).items() if k != "translation"},
        evaluation_ready=job.evaluation is not None,
    )


def _summary_fields(row: Comparison, pairs: list[tuple[dict[str, Any], Job | None]]) -> dict:
    base = row.request.get("base", {})
    first = next((j for _, j in pairs if j is not None), None)
    return {
        "id": str(row.id),
        "name": row.name,
        "status": _status([j for _, j in pairs]),
        "base_model": first.base_model if first else str(base.get("base_model", "")),
        "target_language": first.target_language if first else str(base.get("target_language", "")),
        "runs": [_run_read(r, j) for r, j in pairs],
        "created_at": row.created_at,
    }


def to_summary(session: Session, row: Comparison) -> ComparisonSummary:
    return ComparisonSummary(**_summary_fields(row, _jobs(session, row)))


def to_read(session: Session, row: Comparison) -> ComparisonRead:
    pairs = _jobs(session, row)
    report, note = _report(pairs)
    return ComparisonRead(**_summary_fields(row, pairs), report=report, report_note=note)


def _report(
    pairs: list[tuple[dict[str, Any], Job | None]],
) -> tuple[dict[str, Any] | None, str | None]:
    """compare_reports over the runs' stored evaluations, once every job succeeded."""
    unfinished = [r["label"] for r, j in pairs if j is None or j.status != "succeeded"]
    if unfinished:
        return None, f"waiting for run(s) {', '.join(unfinished)} to succeed"
    missing = [r["label"] for r, j in pairs if j is not None and j.evaluation is None]
    if missing:
        return None, (
            f"run(s) {', '.join(missing)} have no evaluation report "
            "(evaluation disabled or nothing held out)"
        )
    try:
        reports = {
            r["label"]: EvaluationReport.model_validate(j.evaluation)
            for r, j in pairs
            if j is not None
        }
        return compare_reports(reports), None
    except (ValidationError, CloError) as exc:
        logger.warning("comparison report failed: %s", exc)
        return None, f"the runs' reports cannot be compared: {str(exc).splitlines()[0]}"


def list_comparisons(
    session: Session, tenant: Tenant, *, limit: int, cursor: str | None, cursors: CursorCodec
) -> ComparisonList:
    before = cursors.decode(cursor) if cursor else None
    rows = comparisons_repo.list_comparisons(session, tenant.id, limit=limit + 1, before=before)
    page, has_more = rows[:limit], len(rows) > limit
    return ComparisonList(
        data=[to_summary(session, row) for row in page],
        next_cursor=cursors.encode(page[-1]) if has_more and page else None,
        has_more=has_more,
    )
