"""Dependency checks for /readyz: the database and the Celery broker."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import text

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 2.0


def check_database(state: Any) -> dict[str, Any]:
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"ok": True}
    except Exception as exc:  # any failure means "not ready"; the reason goes to the body
        return {"ok": False, "error": type(exc).__name__}


def check_broker(state: Any) -> dict[str, Any]:
    url: str = state.settings.broker_url or ""
    try:
        if url.startswith("filesystem"):
            folder = Path(state.settings.filesystem_broker_dir)
            folder.mkdir(parents=True, exist_ok=True)
            ok = folder.is_dir()
            return {"ok": ok} if ok else {"ok": False, "error": "broker folder missing"}
        from kombu import Connection  # kombu ships with celery

        with Connection(url, connect_timeout=TIMEOUT_SECONDS) as conn:
            conn.ensure_connection(max_retries=1, timeout=TIMEOUT_SECONDS)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


def check_all(state: Any) -> dict[str, dict[str, Any]]:
    return {"database": check_database(state), "broker": check_broker(state)}
