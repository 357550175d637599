"""Pool exhaustion answers 503 with Retry-After, never 500 (issue 15).

Under load every request thread waited for a pooled connection; QueuePool's TimeoutError
then rendered as a 500. Here the app's pool holds one connection, the test holds it, and a
request that needs the database gives up after pool_timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from persistence.db import make_engine, make_session_factory
from tests.api.conftest import make_settings


@pytest.fixture
def tiny_pool_app(pg_url: str, tmp_path: Path) -> Iterator[Any]:
    app = create_app(make_settings(pg_url, tmp_path), lambda _id: None)
    app.state.engine.dispose()
    engine = make_engine(pg_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    yield app
    engine.dispose()


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/comparisons", "/v1/files/nope"])
def test_pool_exhaustion_is_503_with_retry_after(tiny_pool_app, tenant, path: str) -> None:  # type: ignore[no-untyped-def]
    with TestClient(tiny_pool_app, raise_server_exceptions=False) as client:
        assert client.get("/v1/jobs", headers=tenant.headers).status_code == 200
        with tiny_pool_app.state.engine.connect() as held:  # the pool's only connection
            held.execute(text("SELECT 1"))
            response = client.get(path, headers=tenant.headers)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit()
        error = response.json()["error"]
        assert error == {
            "type": "system_error",
            "code": "database_busy",
            "message": "the service is busy; retry shortly",
            "param": None,
        }
        # Once a connection is free again the same request succeeds.
        assert client.get("/v1/jobs", headers=tenant.headers).status_code == 200
