"""What the API tests share: the model allow-list, a valid job body, the app's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from persistence.settings import Settings

# The allow-list the API checks job bodies against.
MODELS = {
    "tiny-lm": {"source": "/models/tiny-lm", "kind": "causal_lm"},
    "tiny-lm-2": {"source": "/models/tiny-lm-2", "kind": "causal_lm"},
    "tiny-mt": {"source": "/models/tiny-mt", "kind": "translator"},
}


def job_body(**overrides: Any) -> dict[str, Any]:
    """A valid POST /v1/jobs body on the test allow-list."""
    body: dict[str, Any] = {
        "base_model": "tiny-lm",
        "target_language": "de",
        "data_size": 32,
        "translator": {"model": "tiny-mt"},
    }
    body.update(overrides)
    return body


def api_settings(pg_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Development settings over the test database: no migration on start, no job limit."""
    values: dict[str, Any] = dict(
        environment="development",
        database_url=pg_url,
        data_dir=data_dir,
        models=MODELS,
        migrate_on_start=False,
        max_concurrent_jobs_per_tenant=1000,
        max_queued_jobs_per_tenant=100000,  # no worker runs them: they all stay queued
        log_json=False,
    )
    values.update(overrides)
    return Settings(**values)
