"""The Alembic migrations and the ORM models describe the same schema on Postgres."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from persistence.models import Base


def test_migrated_postgres_schema_has_no_drift_from_the_models(engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
