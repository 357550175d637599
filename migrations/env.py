"""Alembic environment: one code path for SQLite (batch mode) and Postgres (advisory lock)."""

from alembic import context
from sqlalchemy import text

from persistence.db import make_engine
from persistence.models import Base
from persistence.settings import get_settings

# Any fixed number: API replicas that start together serialise their migrations on it.
_MIGRATION_LOCK_ID = 7_412_903_001

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().db_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    engine = make_engine(url)
    is_sqlite = url.startswith("sqlite")
    with engine.connect() as connection:
        if not is_sqlite:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_ID})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=is_sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if not is_sqlite:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_ID})
                connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
