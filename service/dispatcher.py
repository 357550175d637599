"""The dispatcher: signed webhook deliveries (with retries) and artifact retention.

Run it as its own small process (`python -m service.dispatcher`) beside the reaper; two of
them split the work (SKIP LOCKED claims), so a second one is harmless.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

import httpx
from sqlalchemy.orm import Session, sessionmaker

from persistence.db import make_engine, make_session_factory
from persistence.logs import configure_logging
from persistence.settings import Settings, get_settings
from persistence.storage import open_store
from service.retention import DeletesKeys, remove_expired_artifacts
from service.webhooks.dispatch import dispatch_once
from service.webhooks.sender import http_client

logger = logging.getLogger(__name__)

RETENTION_EVERY_SECONDS = 60.0


def run_once(
    factory: sessionmaker[Session],
    settings: Settings,
    client: httpx.Client,
    store: DeletesKeys,
    *,
    retention: bool = True,
) -> None:
    dispatch_once(factory, settings, client)
    if retention:
        remove_expired_artifacts(factory, settings, store)


def run_forever(
    factory: sessionmaker[Session],
    settings: Settings,
    store: DeletesKeys,
    stop: threading.Event | None = None,
) -> None:
    """A pass every `dispatcher_interval_seconds`, retention at most once a minute; a failed
    pass (database or receiver trouble) is logged and the next one runs as usual."""
    stop = stop or threading.Event()
    retention_due = 0.0
    with http_client(settings) as client:
        while not stop.is_set():
            now = time.monotonic()
            try:
                run_once(factory, settings, client, store, retention=now >= retention_due)
                if now >= retention_due:
                    retention_due = now + RETENTION_EVERY_SECONDS
            except Exception:  # noqa: BLE001 - keep dispatching through DB blips
                logger.exception("dispatcher pass failed; retrying")
            stop.wait(settings.dispatcher_interval_seconds)


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--once", action="store_true", help="Run one pass and exit.")
    args = parser.parse_args(argv)
    configure_logging(json_lines=settings.log_json)  # the API's and worker's setup
    factory = make_session_factory(make_engine(settings.db_url))
    store = open_store(settings)  # the bucket too when CLO_STORAGE_URL is s3://
    if args.once:
        with http_client(settings) as client:
            run_once(factory, settings, client, store)
        return
    run_forever(factory, settings, store)


if __name__ == "__main__":
    main()
