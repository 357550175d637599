"""Persistence tests: a fresh Postgres database per session, migrated by Alembic, dropped after."""

from __future__ import annotations

from tests.support.database import database_fixtures, load_job, make_job  # noqa: F401

pg_url, engine, factory = database_fixtures("clo_p")
