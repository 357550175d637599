"""An export's lease held by a heartbeat thread; once a renewal is refused it counts as lost."""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.repositories import exports as exports_repo
from persistence.repositories.exports import ExportLease

logger = logging.getLogger(__name__)


class HeldExport:
    """Renews `lease` every `heartbeat_seconds` while the export runs (a context manager)."""

    def __init__(
        self,
        lease: ExportLease,
        factory: sessionmaker[Session],
        lease_seconds: int,
        heartbeat_seconds: float,
    ) -> None:
        self.lease = lease
        self._factory = factory
        self._lease_seconds = lease_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="export-heartbeat", daemon=True)
        self.lost = threading.Event()
        self._confirmed_at = time.monotonic()

    def __enter__(self) -> HeldExport:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self._heartbeat_seconds + 5)

    def confirm(self) -> bool:
        """Renew now; False (and lost from then on) when the lease is gone. Asked before a
        write outside the database (the artifact), which no UPDATE fences."""
        if self.lost.is_set():
            return False
        try:
            with session_scope(self._factory) as session:
                held = exports_repo.renew_export(session, self.lease, self._lease_seconds)
        except Exception:  # noqa: BLE001 - unknown: held only while the last renewal lasts
            logger.exception("export %s: lease renewal failed", self.lease.export_id)
            return time.monotonic() - self._confirmed_at < self._lease_seconds
        if not held:
            logger.warning("export %s: lease lost", self.lease.export_id)
            self.lost.set()
            return False
        self._confirmed_at = time.monotonic()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_seconds):
            if not self.confirm() and self.lost.is_set():
                return
