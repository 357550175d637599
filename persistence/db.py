"""Engine and session factory; the caller of a unit of work owns its transaction."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

# AnyIO runs sync endpoints on up to 40 threads per process. A pool smaller than that makes
# busy moments open (and close) a Postgres connection per request, and Postgres forks a backend
# for each; connections are opened lazily, so an idle process still holds only a few.
POOL_SIZE = 20
MAX_OVERFLOW = 20
# A pooled connection idle for longer than this is pinged before use. Under load connections
# come back within milliseconds, so the ping (a round trip per request with pool_pre_ping)
# is skipped; one that died meanwhile fails its first statement instead, which SQLAlchemy
# reports as a disconnect (OperationalError, answered 503) and uses to invalidate the pool.
PING_AFTER_IDLE_S = 1.0
RECYCLE_S = 1800
_LAST_USED = "clo_last_used"


# A run of 19+ digits: an integer orjson would read as a float (beyond 64 bits), or a long
# decimal; such documents are decoded by the stdlib, which keeps big integers exact.
_LONG_DIGITS = re.compile(r"\d{19,}")


def json_loads(text: str | bytes) -> Any:
    """JSON columns decoded with orjson: the stdlib decoder was a fifth of a job list's CPU
    (issue 15's profile). The few documents orjson would read differently from the stdlib
    (integers beyond 64 bits become floats there) take the stdlib path, so every stored row
    reads back exactly as before; so do NaN and Infinity, which orjson refuses."""
    if isinstance(text, bytes):
        text = text.decode()
    if _LONG_DIGITS.search(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN / Infinity, which the stdlib writes and reads
        return json.loads(text)


def make_engine(
    url: str,
    *,
    idle_in_transaction_timeout_s: float | None = None,
    statement_timeout_s: float | None = None,
    **kwargs: Any,
) -> Engine:
    """An engine that behaves the same on SQLite (embedded) and Postgres.

    `idle_in_transaction_timeout_s`: Postgres ends a session whose transaction sat idle that
    long, releasing its row locks. Workers set it: a worker frozen mid-transaction (SIGSTOP,
    a VM pause, a debugger) would otherwise keep its job row locked, and the reaper, which
    skips locked rows, could never requeue the job its expired lease left behind.

    `statement_timeout_s`: Postgres cancels a statement running that long (SQLSTATE 57014);
    the API sets it so a slow query ends as a 503 instead of holding a connection for ever.
    """
    kwargs.setdefault("json_deserializer", json_loads)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # API and worker are separate processes sharing one file: wait on locks, not fail.
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    options = []
    if idle_in_transaction_timeout_s is not None:
        timeout_ms = max(1, int(idle_in_transaction_timeout_s * 1000))
        options.append(f"-c idle_in_transaction_session_timeout={timeout_ms}")
    if statement_timeout_s is not None:
        options.append(f"-c statement_timeout={max(1, int(statement_timeout_s * 1000))}")
    if options:
        kwargs.setdefault("connect_args", {})["options"] = " ".join(options)
    if "poolclass" not in kwargs:  # sizes apply to the default QueuePool only
        kwargs.setdefault("pool_size", POOL_SIZE)
        kwargs.setdefault("max_overflow", MAX_OVERFLOW)
    kwargs.setdefault("pool_recycle", RECYCLE_S)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    event.listen(engine, "handle_error", _server_ended_session_is_disconnect)
    return engine


# SQLSTATE 25P03: the server ended the session after the idle-in-transaction timeout.
_IDLE_IN_TRANSACTION_TIMEOUT = "25P03"


def _server_ended_session_is_disconnect(context: Any) -> None:
    """Treat a session the server ended for sitting idle as a lost connection: the pool drops
    it (rollback and close then do not raise), and callers see connection_invalidated, which
    the worker retries like any database blip, finding on retry that its lease is gone."""
    if getattr(context.original_exception, "sqlstate", None) == _IDLE_IN_TRANSACTION_TIMEOUT:
        context.is_disconnect = True


def _ping_when_idle(engine: Engine) -> None:
    """pool_pre_ping, but only for connections that sat unused for PING_AFTER_IDLE_S."""
    dialect = engine.dialect

    def mark_used(_dbapi_conn: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    def ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            # The pool replaces this connection (and every older one) and retries once.
            raise InvalidatePoolError(f"pooled connection failed its ping: {exc}") from exc

    event.listen(engine, "connect", mark_used)
    event.listen(engine, "checkin", mark_used)
    event.listen(engine, "checkout", ping)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (handlers read them afterwards)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
