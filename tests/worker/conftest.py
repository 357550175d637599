"""Worker tests: a fresh Postgres database per session, migrated by Alembic, dropped after."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

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
            tenant_id=tenant.id, status="queued", spec=spec, base_model="tiny",
            target_language="de", method="clo", data_size=8, max_attempts=3,
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
