"""A held lease: a heartbeat thread renews it and notices cancel requests and takeovers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.repositories import leases
from persistence.repositories.leases import Lease

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A database restart or failover takes seconds to a minute: writes wait that long for it.
DB_RETRY_SECONDS = 300.0


def is_transient_db_error(exc: BaseException) -> bool:
    """Connection refused/lost, server shutting down, deadlock: worth retrying later."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class HeldLease:
    """Runs fenced writes for one lease; once any write is refused, the lease counts as lost."""

    def __init__(
        self,
        lease: Lease,
        session_factory: sessionmaker[Session],
        lease_seconds: int,
        heartbeat_seconds: float,
        db_retry_seconds: float = DB_RETRY_SECONDS,
        cancel_poll_seconds: float = 0.0,
    ) -> None:
        self.lease = lease
        self._db_retry_seconds = db_retry_seconds
        self._factory = session_factory
        self._lease_seconds = lease_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cancel_requested = threading.Event()
        self.handed_back = False  # set once the runner released or gave up the job
        self.lost = threading.Event()
        # When the database last confirmed the lease (monotonic, so a SIGSTOP pause counts).
        self._confirmed_at = time.monotonic()
        self._cancel_poll_seconds = cancel_poll_seconds
        self._cancel_polled_at = time.monotonic()

    def write(self, fn: Callable[..., bool], *args: Any, **kwargs: Any) -> bool:
        """Run `fn(session, lease, ...)` in one transaction; roll back if the fence refuses.

        While the database is unreachable the write is retried (the job pauses) for up to
        `db_retry_seconds`: a Postgres restart must not cost the job its attempt. Retrying is
        safe because the fence refuses the write if the lease changed hands meanwhile.
        """
        give_up_at: float | None = None
        delay = 0.5
        while True:
            try:
                return self._write_once(fn, *args, **kwargs)
            except Exception as exc:
                if not is_transient_db_error(exc):
                    raise
                now = time.monotonic()
                give_up_at = give_up_at or now + self._db_retry_seconds
                if now >= give_up_at:
                    raise
                logger.warning(
                    "job %s: database unavailable during %s; retrying in %.1fs",
                    self.lease.job_id,
                    fn.__name__,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _write_once(self, fn: Callable[..., bool], *args: Any, **kwargs: Any) -> bool:
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

    def confirm(self) -> bool:
        """Renew now and wait for the answer: True only while the lease is certainly ours.
        Asked before every write outside the database (checkpoints, artifacts), which the
        fenced UPDATEs cannot guard."""
        asked_at = time.monotonic()
        if not self.write(_renew, self._lease_seconds):
            return False
        self._confirmed_at = asked_at  # the lease now runs lease_seconds from (after) here
        return True

    def may_have_expired(self) -> bool:
        """No renewal confirmed for half a lease: the process may have been paused (SIGSTOP,
        swapping, a debugger) past its lease, and must ask before it acts again."""
        return time.monotonic() - self._confirmed_at > self._lease_seconds / 2

    def still_held(self) -> bool:
        """Cheap check for every training step: asks the database only when may_have_expired."""
        if self.lost.is_set():
            return False
        return not self.may_have_expired() or self.confirm()

    def poll_cancel(self) -> bool:
        """True once a cancel is requested. Asked between steps of every stage: reads the
        flag from the database at most every `cancel_poll_seconds`, so a cancel lands within
        about a step instead of at the next heartbeat (20 s by default)."""
        if self.cancel_requested.is_set():
            return True
        now = time.monotonic()
        if (
            self._cancel_poll_seconds <= 0
            or now - self._cancel_polled_at < self._cancel_poll_seconds
        ):
            return False
        self._cancel_polled_at = now
        try:
            with session_scope(self._factory) as session:
                pending = leases.cancel_requested(session, self.lease)
        except Exception as exc:  # noqa: BLE001 - the heartbeat still carries the flag
            if not is_transient_db_error(exc):
                logger.exception("job %s: cancel check failed", self.lease.job_id)
            return False
        if pending:
            logger.info("job %s: cancel requested (seen between steps)", self.lease.job_id)
            self.cancel_requested.set()
        return pending

    def beat(self) -> None:
        """Renew once; record a cancel request or a lost lease."""
        asked_at = time.monotonic()
        with session_scope(self._factory) as session:
            state = leases.renew_lease(session, self.lease, self._lease_seconds)
        if state is not None:
            self._confirmed_at = asked_at
        if state is None:
            self._mark_lost("heartbeat")
        elif state.cancel_requested and not self.cancel_requested.is_set():
            logger.info("job %s: cancel requested", self.lease.job_id)
            self.cancel_requested.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._heartbeat_seconds):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a DB blip must not kill the heartbeat
                if is_transient_db_error(exc):
                    logger.warning("job %s: heartbeat failed (database unavailable); retrying",
                                   self.lease.job_id)  # fmt: skip
                else:
                    logger.exception("job %s: heartbeat failed; retrying", self.lease.job_id)
            if self.lost.is_set():
                return

    def __enter__(self) -> HeldLease:
        self._thread = threading.Thread(
            target=self._loop, name=f"heartbeat-{self.lease.job_id}", daemon=True
        )
        self._thread.start()
        return self

    def stop_heartbeat(self) -> None:
        """Stop renewing the lease (before giving it up, and on exit)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.stop_heartbeat()


def _renew(session: Session, lease: Lease, lease_seconds: int) -> bool:
    return leases.renew_lease(session, lease, lease_seconds) is not None
