"""Worker tests: a fresh Postgres database per session, migrated by Alembic, dropped after."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from persistence.settings import Settings
from tests.support.database import database_fixtures, make_job  # noqa: F401
from tests.support.tenants import new_tenant

pg_url, engine, factory = database_fixtures("clo_w")


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
