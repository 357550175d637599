"""A real uvicorn serving the API with CLO_LOG_JSON=true writes only JSON lines: the app's
request lines and uvicorn's own (start-up, access log, shutdown), each once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from service_cli.processes import free_port, spawn, stop, wait_http
from tests.support.live_api import api_env


def test_every_api_log_line_is_json(pg_url, tmp_path: Path, tenant) -> None:  # type: ignore[no-untyped-def]
    env = api_env(pg_url, tmp_path, CLO_LOG_JSON="true")
    port, log = free_port(), tmp_path / "api.log"
    cmd = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1"]
    proc = spawn([*cmd, "--port", str(port)], env, log)  # access log on, level info
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout=60)
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/jobs",
            headers={**tenant.headers, "X-Request-Id": "json-1"},
            timeout=10,
        )
        assert response.status_code == 200
    finally:
        stop(proc, timeout=10)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # a line that is not JSON fails here
    loggers = {entry["logger"] for entry in entries}
    assert {"uvicorn.error", "uvicorn.access", "api.app"} <= loggers, loggers
    assert not any("color_message" in entry for entry in entries)  # no terminal colours
    ours = [e for e in entries if e["logger"] == "api.app" and e.get("request_id") == "json-1"]
    assert len(ours) == 1 and ours[0]["status"] == 200
    access = [e for e in entries if e["logger"] == "uvicorn.access" and "/v1/jobs" in e["message"]]
    assert len(access) == 1 and access[0]["request_id"] == "json-1"  # written once, with the id
