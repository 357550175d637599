"""CLO_API_THREADS sizes the thread pool that runs sync endpoints (AnyIO's default is 40,
which starved the event loop of the GIL under load: bench/RESULTS.md, issue 15)."""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings


def _tokens() -> float:
    return anyio.to_thread.current_default_thread_limiter().total_tokens


def test_the_request_thread_pool_has_the_configured_size(pg_url: str, data_dir: Path) -> None:
    app = create_app(make_settings(pg_url, data_dir, api_threads=3), enqueue=lambda _id: None)
    with TestClient(app) as client:
        assert client.portal is not None
        assert client.portal.call(_tokens) == 3
        assert client.get("/v1/jobs").status_code == 401  # a sync endpoint still answers
