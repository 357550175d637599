"""Under concurrent load the API answers 2xx or 503 + Retry-After, never 500, never a hang.

Issue 15: 100 concurrent job lists stalled 30 s, then answered 500. Each request held its
pooled connection from one thread-pool hop to the next, so once every thread waited for a
connection nothing moved until the pool timed out. Here a real uvicorn runs with a pool of 2
connections (the 40 request threads outnumber it 20 to 1) and a 1 s pool wait: before the
fix this wedged and most requests ended as pool timeouts; now a hop returns its connection
before it ends and the requests get through, and the per-request deadline bounds the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from tests.api.conftest import make_settings
from tests.support.api import job_body
from tests.support.live_api import api_env, live_api

DEADLINE_S = 4.0
CLIENTS = 60
RUN_S = 8.0


async def _client(
    base: str, headers: dict[str, str], paths: list[str], until: float, seen: list
) -> None:
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=DEADLINE_S + 10) as c:
        i = 0
        while time.monotonic() < until:
            path = paths[i % len(paths)]
            i += 1
            started = time.monotonic()
            if path == "POST":
                r = await c.post("/v1/jobs", json=job_body())
            else:
                r = await c.get(path)
            seen.append(
                (path, r.status_code, r.headers.get("retry-after"), time.monotonic() - started)
            )


async def _load(base: str, headers: dict[str, str], job_ids: list[str]) -> list:
    seen: list = []
    until = time.monotonic() + RUN_S
    mixes = [
        ["/v1/jobs?limit=20"],
        [f"/v1/jobs/{job_ids[0]}/events", f"/v1/jobs/{job_ids[1]}/events"],
        [f"/v1/jobs/{job_ids[0]}", "/v1/jobs?limit=5", "POST"],
    ]
    await asyncio.gather(
        *(_client(base, headers, mixes[n % len(mixes)], until, seen) for n in range(CLIENTS))
    )
    return seen


def test_tiny_pool_under_load_answers_2xx_or_503_never_500_never_hangs(  # type: ignore[no-untyped-def]
    pg_url, tmp_path, tenant, insert_job
) -> None:
    job_ids = [str(insert_job(tenant)) for _ in range(2)]
    env = api_env(
        pg_url,
        tmp_path,
        CLO_DB_POOL_SIZE="2",
        CLO_DB_POOL_TIMEOUT_SECONDS="1",
        CLO_REQUEST_DEADLINE_SECONDS=str(DEADLINE_S),
    )
    with live_api(env, tmp_path / "api.log") as api:
        seen = asyncio.run(_load(api.url, tenant.headers, job_ids))
        log = api.log_text()
    statuses = Counter(status for _, status, _, _ in seen)
    assert set(statuses) <= {200, 201, 503}, (statuses, log[-3000:])
    assert all(retry and retry.isdigit() for _, s, retry, _ in seen if s == 503)
    slowest = max(elapsed for *_, elapsed in seen)
    assert slowest < DEADLINE_S + 2, f"a request took {slowest:.1f} s"
    # The point of the fix: requests get through, they are not shed by pool timeouts.
    ok = statuses[200] + statuses[201]
    assert ok >= 0.9 * len(seen) and ok >= 100, statuses
    assert "Traceback" not in log, log[-3000:]


def _slow_app(pg_url: str, tmp_path: Path, deadline_s: float):  # type: ignore[no-untyped-def]
    app = create_app(
        make_settings(
            pg_url, tmp_path, db_statement_timeout_seconds=0.2, request_deadline_seconds=deadline_s
        ),
        lambda _id: None,
    )

    @app.get("/test/slow-query")
    def slow_query() -> dict[str, str]:
        with app.state.engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(30)"))
        return {}

    @app.get("/test/slow-handler")
    def slow_handler() -> dict[str, str]:
        time.sleep(3.5)  # not the database: only the deadline can answer in time
        return {}

    @app.post("/test/slow-post")
    def slow_post(body: dict[str, int]) -> dict[str, int]:
        time.sleep(1.3)  # slower than the body's 1 s re-check, well within the deadline
        return body

    return app


@pytest.fixture
def slow_app(pg_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    return _slow_app(pg_url, tmp_path, deadline_s=2.0)


def test_statement_timeout_is_503_database_busy(pg_url: str, tmp_path: Path) -> None:
    # A deadline far off, so only the statement timeout can answer first, even when a loaded
    # CI machine takes seconds to open the first connection (CI once saw the 2 s deadline win).
    app = _slow_app(pg_url, tmp_path, deadline_s=25.0)
    with TestClient(app, raise_server_exceptions=False) as client:
        started = time.monotonic()
        response = client.get("/test/slow-query")
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "database_busy"
    assert response.headers["retry-after"].isdigit()
    assert time.monotonic() - started < 15  # cancelled at 0.2 s, not after pg_sleep's 30 s


def test_request_past_its_deadline_is_503_with_retry_after(slow_app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(slow_app, raise_server_exceptions=False) as client:
        started = time.monotonic()
        response = client.get("/test/slow-handler")
        elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "request_deadline_exceeded"
    assert response.headers["retry-after"].isdigit()
    assert 2.0 <= elapsed < 3.0, elapsed


def test_request_with_a_body_within_its_deadline_is_answered(slow_app) -> None:  # type: ignore[no-untyped-def]
    # The deadline counts from the body's arrival; a first version gave up at its first
    # 1 s re-check once the body was in (a cold POST /v1/jobs got a 503 after 1 s).
    with TestClient(slow_app, raise_server_exceptions=False) as client:
        response = client.post("/test/slow-post", json={"n": 7})
    assert response.status_code == 200, response.text
    assert response.json() == {"n": 7}
