"""One structured log line, a request id and Prometheus samples for every request."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from api.logs import JsonFormatter
from tests.api.conftest import job_body


class _Lines(logging.Handler):
    """Formats at emit time, while the request's context variables are still set."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []  # type: ignore[type-arg]

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def request_lines() -> Iterator[list[dict]]:  # type: ignore[type-arg]
    handler = _Lines()
    log = logging.getLogger("api.app")
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


def test_request_line_carries_route_status_tenant_job_and_request_id(
    client,  # type: ignore[no-untyped-def]
    tenant,
    request_lines,
) -> None:
    created = client.post("/v1/jobs", json=job_body(), headers=tenant.headers)
    job_id = created.json()["id"]
    assert len(created.headers["X-Request-Id"]) == 16  # generated when the client sent none
    read = client.get(f"/v1/jobs/{job_id}", headers={**tenant.headers, "X-Request-Id": "req-42"})
    assert read.headers["X-Request-Id"] == "req-42"  # the client's id is echoed back

    post_line, get_line = (
        next(line for line in request_lines if line["message"].startswith(prefix))
        for prefix in ("POST /v1/jobs ->", "GET /v1/jobs/{job_id} ->")
    )
    assert post_line["status"] == 201 and post_line["job_id"] == job_id
    assert post_line["request_id"] == created.headers["X-Request-Id"]
    assert get_line["status"] == 200 and get_line["request_id"] == "req-42"
    assert get_line["tenant"] == tenant.name and get_line["job_id"] == job_id
    assert isinstance(get_line["duration_ms"], float)


def test_unknown_route_and_oversized_body(client, tenant, request_lines) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/v1/nowhere", headers=tenant.headers).status_code == 404
    line = request_lines[-1]
    assert line["message"] == "GET unmatched -> 404" and line["tenant"] is None
    big = client.post(
        "/v1/jobs",
        content=b"x" * 10,
        headers={**tenant.headers, "Content-Length": str(10**9)},
    )
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "request_too_large"
    text = client.get("/metrics").text
    assert 'clo_http_requests_total{method="GET",route="unmatched",status="404"}' in text
    assert 'clo_http_requests_total{method="POST",route="unmatched",status="413"}' in text
    assert 'clo_http_request_seconds_count{method="GET",route="unmatched"}' in text
