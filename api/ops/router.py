"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from api.errors import COMMON_ERRORS
from api.ops import probes
from api.ops.metrics import check_metrics_token, render_metrics

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (no dependency checks: a DB outage must not restart the API)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is unavailable"}})
async def readyz(request: Request) -> JSONResponse:
    """200 when the database and the broker answer, else 503 naming what failed (also while
    the process is shutting down, so a balancer stops sending it requests)."""
    if request.app.state.draining.is_set():
        return JSONResponse({"status": "draining", "checks": {}}, status_code=503)
    checks = await run_in_threadpool(probes.check_all, request.app.state)
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", response_class=PlainTextResponse, responses={401: COMMON_ERRORS[401]})
async def metrics(request: Request) -> Response:
    """Prometheus text format; needs `Authorization: Bearer <CLO_METRICS_TOKEN>` when set."""
    token = request.app.state.settings.metrics_token
    check_metrics_token(
        token.get_secret_value() if token else None, request.headers.get("authorization", "")
    )
    body, content_type = await run_in_threadpool(render_metrics, request.app.state)
    return Response(body, media_type=content_type)
