"""Typed dependencies: the request's session (and its transaction), tenant, job."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from api.errors import InvalidRequest, NotFound, Unauthorized
from persistence.artifact_store import BlobStore
from persistence.models import Job, Tenant
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import tenants as tenants_repo
from persistence.settings import Settings

logger = logging.getLogger(__name__)

AFTER_COMMIT = "after_commit"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the request's transaction has committed (never on rollback)."""
    session.info.setdefault(AFTER_COMMIT, []).append(callback)


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: commit when the handler returns, roll back if it raises.

    Declared with scope="function" so the commit happens before the response is sent: a
    client that reads its new job right after the 201 always finds it.
    """
    factory: sessionmaker[Session] = request.app.state.session_factory
    session = factory()
    try:
        yield session
        session.commit()
        callbacks = session.info.pop(AFTER_COMMIT, [])
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    for callback in callbacks:
        try:
            callback()
        except Exception:  # the reaper re-enqueues queued jobs whose message never left
            logger.exception("after-commit callback failed")


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def release_connection(session: Session) -> None:
    """End the session's transaction so its pooled connection goes back to the pool now.

    FastAPI runs each sync dependency and the endpoint in its own thread-pool hop. A
    connection kept from one hop to the next is held while the request waits for a free
    thread; with every thread in turn waiting for a connection, nothing moved until the pool
    timed out (issue 15: 100 concurrent job lists stalled 30 s). So every hop gives its
    connection back before it ends; the next query of the request takes one again.
    """
    if session.in_transaction():
        session.commit()


@contextmanager
def read_connection(request: Request) -> Iterator[Connection]:
    """A pooled connection in autocommit mode, for a read that is one statement.

    The statement is its own snapshot, so BEGIN and COMMIT would only add two round trips.
    """
    engine: Engine = request.app.state.engine
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> BlobStore:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StoreDep = Annotated[BlobStore, Depends(get_store)]


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer_secret(request: Request) -> str:
    """The API key sent as 'Authorization: Bearer <key>'; 401 when there is none."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthorized(
            "missing API key: send 'Authorization: Bearer <key>'",
            code="missing_api_key",
            headers=_CHALLENGE,
        )
    return secret


def invalid_key() -> Unauthorized:
    return Unauthorized("invalid or revoked API key", headers=_CHALLENGE)


def get_current_tenant(request: Request, session: SessionDep) -> Tenant:
    """The tenant of the Bearer API key; checked against the database on every request."""
    tenant = tenants_repo.tenant_for_key(session, bearer_secret(request))
    release_connection(session)
    if tenant is None:
        raise invalid_key()
    request.state.tenant = tenant.name
    return tenant


CurrentTenant = Annotated[Tenant, Depends(get_current_tenant)]


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """An id from the URL; a malformed one is just an id that does not exist."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} {value!r} not found", code=f"{what}_not_found") from None


def get_current_job(
    job_id: str, request: Request, session: SessionDep, tenant: CurrentTenant
) -> Job:
    """The tenant's job or 404 (another tenant's job looks exactly like a missing one)."""
    job = jobs_repo.get_job_for_tenant(session, tenant.id, parse_uuid(job_id, "job"))
    release_connection(session)
    if job is None:
        raise NotFound(f"job {job_id!r} not found", code="job_not_found")
    request.state.job_id = str(job.id)
    return job


CurrentJob = Annotated[Job, Depends(get_current_job)]


async def reject_repeated_query_parameters(request: Request) -> None:
    """Every query parameter of this API takes one value; `?status=a&status=b` is refused
    with a 422 naming it rather than silently answered for the last value (which a client
    meaning "a or b" would misread as the full answer).

    Async (it only reads the URL): as a sync dependency of every route it cost each request
    a thread-pool round trip of its own (issue 15)."""
    seen: set[str] = set()
    for key, _value in request.query_params.multi_items():
        if key in seen:
            raise InvalidRequest(
                f"query parameter {key!r} was given more than once; it takes one value",
                code="repeated_query_parameter",
                param=key,
            )
        seen.add(key)
