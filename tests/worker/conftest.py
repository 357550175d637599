"""Worker tests: a fresh Postgres database per session, migrated by Alembic, dropped after."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from persistence.db import make_engine, make_session_factory, session_scope
from persistence.models import Job, Tenant

ADMIN_DSN = os.environ.get("CLO_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
PG_HOST = os.environ.get("CLO_TEST_PG_HOST", "postgres@127.0.0.1:5432")


def _admin(sql: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a new, migrated database that exists for this test session only."""
    from persistence.migrate import upgrade_head

    name = f"clo_w_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{PG_HOST}/{name}"
    try:
        upgrade_head(url)
        yield url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine(pg_url: str) -> Iterator[Engine]:
    eng = make_engine(pg_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def _insert_job(factory: sessionmaker[Session], **overrides: object) -> uuid.UUID:
    spec = {"base_model": "tiny", "target_language": "de", "data_size": 8}
    with session_scope(factory) as session:
        tenant = Tenant(name=f"t-{uuid.uuid4().hex[:10]}")
        session.add(tenant)
        session.flush()
        values: dict[str, object] = dict(
            tenant_id=tenant.id,
            status="queued",
            spec=spec,
            base_model="tiny",
            target_language="de",
            method="clo",
            data_size=8,
            max_attempts=3,
        )
        values.update(overrides)
        job = Job(**values)
        session.add(job)
        session.flush()
        return job.id


@pytest.fixture
def make_job(factory: sessionmaker[Session]) -> Callable[..., uuid.UUID]:
    """Insert a queued job row (with its own tenant) and return its id."""

    def make(**overrides: object) -> uuid.UUID:
        return _insert_job(factory, **overrides)

    return make


def _service_env(pg_url: str, data_dir: Path) -> dict[str, str]:
    """Environment for a real API + worker on this session's database and a private queue."""
    return {
        "CLO_ENVIRONMENT": "development",
        "CLO_DATABASE_URL": pg_url,
        # Its own Redis db and queue: parallel test sessions never see each other's messages.
        "CLO_BROKER_URL": f"redis://127.0.0.1:6379/{random.randint(1, 15)}",
        "CLO_QUEUE": f"gpu-{uuid.uuid4().hex[:8]}",
        "CLO_DATA_DIR": str(data_dir),
        "CLO_LEASE_SECONDS": "20",
        "CLO_HEARTBEAT_SECONDS": "1",
        "CLO_PROGRESS_INTERVAL_SECONDS": "0.2",
        "CLO_LOG_JSON": "false",
        "CLO_MIGRATE_ON_START": "false",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture(scope="session")
def make_service_env(pg_url: str) -> Callable[[Path], dict[str, str]]:
    """make(data_dir) -> env for API/worker subprocesses on this session's database."""

    def make(data_dir: Path) -> dict[str, str]:
        return _service_env(pg_url, data_dir)

    return make


@pytest.fixture
def new_api_key(factory: sessionmaker[Session]) -> Callable[[], str]:
    """A fresh tenant's API key (secret)."""
    from persistence.repositories import tenants

    def make() -> str:
        with session_scope(factory) as session:
            tenant = tenants.create_tenant(session, f"t-{uuid.uuid4().hex[:10]}")
            _, key = tenants.create_api_key(session, tenant)
        return key.secret

    return make
