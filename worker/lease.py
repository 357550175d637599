"""A held lease: a heartbeat thread renews it and notices cancel requests and takeovers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from persistence import job_runs
from persistence.db import session_scope
from persistence.job_runs import Lease

logger = logging.getLogger(__name__)

T = TypeVar("T")


class HeldLease:
    """Runs fenced writes for one lease; once any write is refused, the lease counts as lost."""

    def __init__(
        self,
        lease: Lease,
        session_factory: sessionmaker[Session],
        lease_seconds: int,
        heartbeat_seconds: float,
    ) -> None:
        self.lease = lease
        self._factory = session_factory
        self._lease_seconds = lease_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cancel_requested = threading.Event()
        self.lost = threading.Event()

    def write(self, fn: Callable[..., bool], *args: Any, **kwargs: Any) -> bool:
        """Run `fn(session, lease, ...)` in one transaction; roll back if the fence refuses."""
        if self.lost.is_set():
            return False
        session = self._factory()
        try:
            ok = fn(session, self.lease, *args, **kwargs)
            if ok:
                session.commit()
            else:
                session.rollback()
                self._mark_lost(fn.__name__)
            return ok
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _mark_lost(self, where: str) -> None:
        if not self.lost.is_set():
            logger.warning("job %s: lease lost (%s refused); stopping", self.lease.job_id, where)
            self.lost.set()

    def beat(self) -> None:
        """Renew once; record a cancel request or a lost lease."""
        with session_scope(self._factory) as session:
            state = job_runs.renew_lease(session, self.lease, self._lease_seconds)
        if state is None:
            self._mark_lost("heartbeat")
        elif state.cancel_requested and not self.cancel_requested.is_set():
            logger.info("job %s: cancel requested", self.lease.job_id)
            self.cancel_requested.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._heartbeat_seconds):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a DB blip must not kill the heartbeat
                logger.exception("job %s: heartbeat failed; retrying", self.lease.job_id)
            if self.lost.is_set():
                return

    def __enter__(self) -> HeldLease:
        self._thread = threading.Thread(
            target=self._loop, name=f"heartbeat-{self.lease.job_id}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
