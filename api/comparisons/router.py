"""Comparison endpoints: train several methods on the same data and compare them side by side."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from api.comparisons import service
from api.comparisons.schemas import ComparisonCreate, ComparisonList, ComparisonRead
from api.deps import CurrentTenant, SessionDep, SettingsDep, parse_uuid
from api.errors import COMMON_ERRORS, NotFound
from api.idempotency import answer_created, create_responses
from persistence.repositories import comparisons as comparisons_repo

router = APIRouter(prefix="/v1/comparisons", tags=["comparisons"], responses=COMMON_ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=ComparisonRead,
    responses=create_responses(ComparisonRead, "the comparison before"),
)
def create_comparison(
    body: ComparisonCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> ComparisonRead:
    """One job per run on the same data; without runs, CLO and the SFT baseline."""
    row, created = service.create_comparison(
        session,
        tenant,
        body,
        settings=settings,
        enqueuer=request.app.state.enqueuer,
        idempotency_key=idempotency_key,
    )
    answer_created(response, created, f"/v1/comparisons/{row.id}")
    return service.to_read(session, row)


@router.get("", response_model=ComparisonList)
def list_comparisons(
    request: Request,
    session: SessionDep,
    tenant: CurrentTenant,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> ComparisonList:
    """Newest first, with each run's status; follow next_cursor until has_more is false."""
    return service.list_comparisons(
        session, tenant, limit=limit, cursor=cursor, cursors=request.app.state.cursors
    )


@router.get("/{comparison_id}", response_model=ComparisonRead)
def get_comparison(
    comparison_id: str, session: SessionDep, tenant: CurrentTenant
) -> ComparisonRead:
    """Run statuses, and the side-by-side report once every run succeeded."""
    row = comparisons_repo.get_comparison_for_tenant(
        session, tenant.id, parse_uuid(comparison_id, "comparison")
    )
    if row is None:
        raise NotFound(f"comparison {comparison_id!r} not found", code="comparison_not_found")
    return service.to_read(session, row)
