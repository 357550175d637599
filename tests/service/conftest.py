"""Service tests: a fresh Postgres database per test session (Alembic-migrated, dropped after),
the real FastAPI app over it, and builders for tenants, keys, jobs and artifacts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from persistence.db import make_engine, make_session_factory, session_scope
from persistence.models import Job
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import tenants as tenants_repo
from persistence.settings import Settings

ADMIN_DSN = os.environ.get("CLO_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
PG_HOST = os.environ.get("CLO_TEST_PG_HOST", "postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("CLO_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")

MODELS = {
    "tiny-lm": {"source": "/models/tiny-lm", "kind": "causal_lm"},
    "tiny-lm-2": {"source": "/models/tiny-lm-2", "kind": "causal_lm"},
    "tiny-mt": {"source": "/models/tiny-mt", "kind": "translator"},
}


def job_body(**overrides: Any) -> dict[str, Any]:
    """A valid POST /v1/jobs body on the test allow-list."""
    body: dict[str, Any] = {
        "base_model": "tiny-lm",
        "target_language": "de",
        "data_size": 32,
        "translator": {"model": "tiny-mt"},
    }
    body.update(overrides)
    return body


def _admin(sql: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    from persistence.migrate import upgrade_head

    name = f"clo_api_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{PG_HOST}/{name}"
    try:
        upgrade_head(url)
        yield url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clo-data")


def make_settings(pg_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        environment="development",
        database_url=pg_url,
        broker_url=REDIS_URL,
        data_dir=data_dir,
        models=MODELS,
        migrate_on_start=False,
        max_concurrent_jobs_per_tenant=1000,
        max_upload_bytes=64 * 1024,
        sse_poll_seconds=0.05,
        log_json=False,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(pg_url: str, data_dir: Path) -> Settings:
    return make_settings(pg_url, data_dir)


@pytest.fixture(scope="session")
def factory(pg_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(pg_url)
    yield make_session_factory(engine)
    engine.dispose()


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


@dataclass
class TenantKey:
    tenant_id: uuid.UUID
    name: str
    key: str
    prefix: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def make_tenant(factory: sessionmaker[Session]) -> Callable[[], TenantKey]:
    def build() -> TenantKey:
        with session_scope(factory) as session:
            tenant = tenants_repo.create_tenant(session, f"t-{uuid.uuid4().hex[:12]}")
            row, new = tenants_repo.create_api_key(session, tenant)
            return TenantKey(tenant.id, tenant.name, new.secret, row.prefix)

    return build


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


@pytest.fixture
def load_job(factory: sessionmaker[Session]) -> Callable[[uuid.UUID | str], Job]:
    def load(job_id: uuid.UUID | str) -> Job:
        with factory() as session:
            job = session.get(Job, uuid.UUID(str(job_id)))
            assert job is not None
            session.expunge(job)
            return job

    return load
