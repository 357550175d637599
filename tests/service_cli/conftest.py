"""The service CLI is checked against the API it talks to: its own database, the API tests' app."""

from tests.api.conftest import app, client, data_dir, enqueued, settings  # noqa: F401
from tests.support.database import database_fixtures

pg_url, engine, factory = database_fixtures("clo_service_cli")
