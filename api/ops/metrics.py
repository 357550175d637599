"""Prometheus metrics: request counters plus job counts read from the database at scrape time.

Only aggregates: labels are a method, a route template, a status, a job status; never a
tenant, a key, a job id or a raw path (an unmatched URL is counted as route "unmatched").
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from api.errors import Unauthorized
from persistence.models import Job

logger = logging.getLogger(__name__)


class JobStatusCollector(Collector):
    """clo_jobs{status} from the jobs table, so every API replica reports the same truth."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Any:
        family = GaugeMetricFamily("clo_jobs", "Jobs by status", labels=["status"])
        try:
            with self.state.session_factory() as session:
                rows = session.execute(select(Job.status, func.count()).group_by(Job.status))
                for status, count in rows:
                    family.add_metric([status], count)
        except Exception:
            logger.warning("could not read job counts for /metrics")
        yield family


class ApiMetrics:
    """One registry per app, so several apps (tests) never collide on metric names."""

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "clo_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "clo_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            registry=self.registry,
        )
        self.jobs_created = Counter(
            "clo_jobs_created", "Jobs accepted by this API process", registry=self.registry
        )
        self.registry.register(JobStatusCollector(state))


def render_metrics(state: Any) -> tuple[bytes, str]:
    return generate_latest(state.metrics.registry), CONTENT_TYPE_LATEST


def count_created(send: Callable[..., object], counter: Counter) -> Callable[..., object]:
    """`send` (the after-commit wake-up of a new job) that first counts the job as created;
    jobs, comparisons and any other surface that creates jobs all go through it. The queue,
    when given (a GPU class's, service.gpu_routing), is passed on."""

    def counted(job_id: str, *queue: str) -> object:
        counter.inc()
        return send(job_id, *queue)

    return counted


def check_metrics_token(expected: str | None, authorization: str) -> None:
    """401 unless `Authorization: Bearer <CLO_METRICS_TOKEN>`; no check when none is set."""
    if expected is None:
        return
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "/metrics needs 'Authorization: Bearer <metrics token>'",
            code="missing_metrics_token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized(
            "wrong metrics token",
            code="invalid_metrics_token",
            headers={"WWW-Authenticate": "Bearer"},
        )
