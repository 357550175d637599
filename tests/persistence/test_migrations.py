"""The Alembic migrations: they describe the models' schema on Postgres and run on SQLite."""

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from persistence.db import make_engine
from persistence.migrate import upgrade_head
from persistence.models import Base

TABLES = {
    "tenants",
    "api_keys",
    "jobs",
    "job_events",
    "job_metrics",
    "artifacts",
    "files",
    "translation_cache",
    "comparisons",
    "base_evaluations",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
    "deleted_jobs",
    "job_exports",
    "alembic_version",
}


def test_migrations_upgrade_head_on_sqlite_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'clo.db'}"
    upgrade_head(url)
    upgrade_head(url)  # a second start finds nothing to do
    assert set(inspect(make_engine(url)).get_table_names()) == TABLES


def test_migrated_postgres_schema_has_no_drift_from_the_models(engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
