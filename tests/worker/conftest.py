"""Worker tests: a fresh Postgres database per session, migrated by Alembic, dropped after."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.models import Job, Tenant
from persistence.settings import Settings
from tests.support.database import database_fixtures
from tests.support.tenants import new_tenant

pg_url, engine, factory = database_fixtures("clo_w")


def _insert_job(factory: sessionmaker[Session], **overrides: object) -> uuid.UUID:
    """A queued job row, of a new tenant of its own unless `tenant_id` is given."""
    spec = {"base_model": "tiny", "target_language": "de", "data_size": 8}
    with session_scope(factory) as session:
        if "tenant_id" not in overrides:
            tenant = Tenant(name=f"t-{uuid.uuid4().hex[:10]}")
            session.add(tenant)
            session.flush()
            overrides = {"tenant_id": tenant.id, **overrides}
        values: dict[str, object] = dict(
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
    """Insert a queued job row (with its own tenant unless given one) and return its id."""

    def make(**overrides: object) -> uuid.UUID:
        return _insert_job(factory, **overrides)

    return make


def in_process_settings(pg_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for running a job in this process: no broker, a 30 s lease, 1 s heartbeats."""
    values: dict[str, Any] = dict(
        database_url=pg_url,
        data_dir=data_dir,
        broker_url="memory://",
        lease_seconds=30,
        heartbeat_seconds=1,
    )
    values.update(overrides)
    return Settings(**values)


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
    return lambda: new_tenant(factory).key
