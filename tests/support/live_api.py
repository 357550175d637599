"""A real uvicorn process serving the API on a free loopback port, for behaviour that needs
the server itself: signals and graceful shutdown, clients hanging up mid-body."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from service_cli.processes import free_port, spawn, stop, wait_http
from tests.support.api import MODELS


@dataclass
class LiveApi:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def api_env(pg_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """Development settings over the test database (the conftest's, as CLO_* variables)."""
    return {
        "CLO_ENVIRONMENT": "development",
        "CLO_DATABASE_URL": pg_url,
        "CLO_BROKER_URL": "redis://127.0.0.1:6379/14",
        "CLO_QUEUE": "gpu-live-api-tests",
        "CLO_DATA_DIR": str(data_dir),
        "CLO_MODELS": json.dumps(MODELS),
        "CLO_MIGRATE_ON_START": "false",
        "CLO_MAX_CONCURRENT_JOBS_PER_TENANT": "1000",
        "CLO_MAX_QUEUED_JOBS_PER_TENANT": "100000",  # load tests queue many jobs, none run
        "CLO_SSE_POLL_SECONDS": "0.1",
        "CLO_LOG_JSON": "false",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


@contextmanager
def live_api(
    env: dict[str, str], log: Path, uvicorn_args: tuple[str, ...] = ()
) -> Iterator[LiveApi]:
    """uvicorn api.app:app on 127.0.0.1 (one process, access log off); stopped on exit."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--no-access-log", *uvicorn_args]
    proc = spawn(cmd, env, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout=60)
        yield LiveApi(proc, port, log)
    finally:
        stop(proc, timeout=10)
