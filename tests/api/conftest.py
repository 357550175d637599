"""Service tests: a fresh Postgres database per test session (Alembic-migrated, dropped after),
the real FastAPI app over it, and builders for tenants, keys, jobs and artifacts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from persistence.db import session_scope
from persistence.repositories import jobs as jobs_repo
from persistence.settings import Settings
from tests.support.api import api_settings, job_body
from tests.support.database import database_fixtures, load_job  # noqa: F401
from tests.support.tenants import TenantKey, new_tenant

REDIS_URL = os.environ.get("CLO_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")

pg_url, engine, factory = database_fixtures("clo_api")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clo-data")


def make_settings(pg_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        broker_url=REDIS_URL,
        max_upload_bytes=64 * 1024,
        sse_poll_seconds=0.05,
    )
    values.update(overrides)
    return api_settings(pg_url, data_dir, **values)


@pytest.fixture(scope="session")
def settings(pg_url: str, data_dir: Path) -> Settings:
    return make_settings(pg_url, data_dir)


@pytest.fixture(scope="session")
def enqueued() -> list[str]:
    """Job ids the app enqueued (after commit), in order."""
    return []


@pytest.fixture(scope="session")
def app(settings: Settings, enqueued: list[str]) -> Any:
    return create_app(settings, enqueue=enqueued.append)


@pytest.fixture(scope="session")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def make_tenant(factory: sessionmaker[Session]) -> Callable[[], TenantKey]:
    return lambda: new_tenant(factory)


@pytest.fixture
def tenant(make_tenant: Callable[[], TenantKey]) -> TenantKey:
    return make_tenant()


@pytest.fixture
def insert_job(factory: sessionmaker[Session]) -> Callable[..., uuid.UUID]:
    """Insert a job row directly (as the worker would leave it), bypassing the API."""

    def build(tenant: TenantKey, **fields: Any) -> uuid.UUID:
        body = job_body(**fields.pop("spec", {}))
        with session_scope(factory) as session:
            job = jobs_repo.create_job(
                session, tenant_id=tenant.tenant_id, spec=body, max_attempts=3
            )
            for name, value in fields.items():
                setattr(job, name, value)
            return job.id

    return build
