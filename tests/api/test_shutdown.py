"""Graceful shutdown of a real uvicorn process: SIGTERM with an SSE stream open ends the stream
with a `retry:` hint (no `end`: the client reconnects elsewhere) and the process exits soon.

Before, the stream of a running job kept the process alive (refusing new connections) until
it was killed: uvicorn waits for open responses before it tells the app anything.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from api.jobs.sse import SHUTDOWN_FRAME, SHUTDOWN_RETRY_MS
from persistence.db import session_scope
from persistence.repositories import events as events_repo
from tests.api.conftest import make_settings
from tests.support.live_api import api_env, live_api

ROOT = Path(__file__).resolve().parents[2]
# Without uvicorn's --timeout-graceful-shutdown backstop the stream must end by itself: it
# checks the flag every CLO_SSE_POLL_SECONDS (0.1 s here), then uvicorn closes and exits.
EXIT_BOUND_SECONDS = 5.0


def test_sigterm_ends_open_stream_with_retry_hint_and_exits(  # type: ignore[no-untyped-def]
    pg_url, tmp_path, tenant, insert_job, factory
) -> None:
    job_id = insert_job(tenant, status="running", stage="training")
    with session_scope(factory) as session:
        events_repo.append_event(session, job_id, "progress", "step 1", {"step": 1})
    with live_api(api_env(pg_url, tmp_path), tmp_path / "api.log") as api:
        received: list[str] = []
        url = f"{api.url}/v1/jobs/{job_id}/events/stream"
        with httpx.stream("GET", url, headers=tenant.headers, timeout=10) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            for line in lines:
                received.append(line)
                if line.startswith("id: 1"):
                    break
            os.kill(api.proc.pid, signal.SIGTERM)
            signalled = time.monotonic()
            received.extend(lines)  # until the server ends the stream
            stream_ended = time.monotonic() - signalled
        exit_code = api.proc.wait(timeout=EXIT_BOUND_SECONDS + 5)
        exited = time.monotonic() - signalled
    tail = received[received.index("id: 1") :]
    assert f"retry: {SHUTDOWN_RETRY_MS}" in tail, received
    assert "event: end" not in tail  # not "the job is over": reconnect and resume
    assert stream_ended < 2.0
    assert exited < EXIT_BOUND_SECONDS, f"exited {exited:.1f}s after SIGTERM"
    assert exit_code in (0, -signal.SIGTERM), api.log_text()[-2000:]


def test_compose_bounds_the_api_shutdown() -> None:
    """The documented bound is what compose runs: uvicorn cancels what is still open after
    --timeout-graceful-shutdown, and compose's SIGKILL comes only after a longer grace."""
    api = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api"]
    command = " ".join(api["command"])
    graceful = int(re.search(r"--timeout-graceful-shutdown (\d+)", command).group(1))  # type: ignore[union-attr]
    grace = int(re.fullmatch(r"(\d+)s", api["stop_grace_period"]).group(1))  # type: ignore[union-attr]
    assert 0 < graceful < grace


def test_draining_app_is_unready_and_ends_streams(  # type: ignore[no-untyped-def]
    pg_url, tmp_path, tenant, insert_job
) -> None:
    """What the signal sets, without a server: /readyz turns 503 (a balancer stops routing
    here) and a stream opened now ends with the hint after its replay."""
    job_id = insert_job(tenant, status="running", stage="training")
    with TestClient(create_app(make_settings(pg_url, tmp_path), lambda _id: None)) as c:
        assert c.get("/readyz").status_code == 200
        c.app.state.draining.begin()  # type: ignore[attr-defined]
        ready = c.get("/readyz")
        stream = c.get(f"/v1/jobs/{job_id}/events/stream", headers=tenant.headers)
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert stream.text.endswith(SHUTDOWN_FRAME)
