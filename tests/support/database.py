"""A throwaway Postgres database per test session (Alembic-migrated, dropped after), the
engine and session factory over it, and job-row builder and loader fixtures."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from persistence.db import make_engine, make_session_factory, session_scope
from persistence.models import Job
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import tenants as tenants_repo

ADMIN_DSN = os.environ.get("CLO_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
PG_HOST = os.environ.get("CLO_TEST_PG_HOST", "postgres@127.0.0.1:5432")


def _admin(sql: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@contextmanager
def migrated_database(prefix: str) -> Iterator[str]:
    """URL of a new database `<prefix>_<random>`, migrated to head; dropped on exit."""
    from persistence.migrate import upgrade_head

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{PG_HOST}/{name}"
    try:
        upgrade_head(url)
        yield url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_fixtures(prefix: str) -> tuple[Any, Any, Any]:
    """Session fixtures (pg_url, engine, factory) for one test folder's conftest: a database
    `<prefix>_<random>` that exists for this test session only, and an engine and a session
    factory over it. Each conftest makes its own: pytest caches a session fixture once per
    definition, so folders sharing one would share the first folder's database."""

    @pytest.fixture(scope="session")
    def pg_url() -> Iterator[str]:
        with migrated_database(prefix) as url:
            yield url

    @pytest.fixture(scope="session")
    def engine(pg_url: str) -> Iterator[Engine]:
        eng = make_engine(pg_url)
        yield eng
        eng.dispose()

    @pytest.fixture(scope="session")
    def factory(engine: Engine) -> sessionmaker[Session]:
        return make_session_factory(engine)

    return pg_url, engine, factory


@pytest.fixture
def load_job(factory: sessionmaker[Session]) -> Callable[[uuid.UUID | str], Job]:
    """The job row as the database has it now (detached from its session)."""

    def load(job_id: uuid.UUID | str) -> Job:
        with factory() as session:
            job = session.get(Job, uuid.UUID(str(job_id)))
            assert job is not None
            session.expunge(job)
            return job

    return load


def insert_job(factory: sessionmaker[Session], **overrides: Any) -> uuid.UUID:
    """A queued job row, of a new tenant of its own unless `tenant_id` is given; other
    overrides set columns afterwards, as a worker or time would have left them."""
    spec = overrides.pop("spec", {"base_model": "tiny", "target_language": "de", "data_size": 8})
    with session_scope(factory) as session:
        tenant_id = overrides.pop("tenant_id", None)
        if tenant_id is None:
            tenant_id = tenants_repo.create_tenant(session, f"t-{uuid.uuid4().hex[:10]}").id
        job = jobs_repo.create_job(
            session,
            tenant_id=tenant_id,
            spec=spec,
            max_attempts=overrides.pop("max_attempts", 3),
        )
        for name, value in overrides.items():
            setattr(job, name, value)
        return job.id


@pytest.fixture
def make_job(factory: sessionmaker[Session]) -> Callable[..., uuid.UUID]:
    """Insert a queued job row (with its own tenant unless given one) and return its id."""

    def make(**overrides: Any) -> uuid.UUID:
        return insert_job(factory, **overrides)

    return make
