"""No pooled connection held across thread-pool hops: sync endpoints commit in their own hop.

FastAPI runs each sync dependency, the endpoint and the response validation in separate
thread-pool hops (AnyIO's 40 threads), and the request session's dependency committed only
at teardown. A request therefore held its connection while it waited for a thread for its
next hop, while the threads were busy waiting for connections: with every thread waiting,
nothing moved until the pool timed out (issue 15: 100 concurrent job lists stalled 30 s, then
answered 500). The dependencies that query (api/deps.py) give their connection back at the
end of their hop; this wraps each sync endpoint so that its session's transaction ends in the
endpoint's hop, before FastAPI takes another thread to validate the response. Teardown
(get_session's commit, now a no-op, and the after-commit callbacks) runs on FastAPI's private
exit limiter, which never waits for a pool thread, so it cannot take part in a cycle.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from api.deps import release_connection

_WRAPPED = "__clo_commits_in_hop__"


def _commits_in_hop(call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)  # FastAPI reads the signature through __wrapped__
    def run(**kwargs: Any) -> Any:
        sessions = [value for value in kwargs.values() if isinstance(value, Session)]
        try:
            result = call(**kwargs)
        except BaseException:
            for session in sessions:
                session.rollback()  # get_session's own rollback then has nothing to do
            raise
        for session in sessions:
            release_connection(session)  # commit: the handler's work is done
        return result

    setattr(run, _WRAPPED, True)
    return run


def _is_sync_function(call: object) -> bool:
    return (
        inspect.isfunction(call)
        and not inspect.iscoroutinefunction(call)
        and not inspect.isgeneratorfunction(call)
        and not inspect.isasyncgenfunction(call)
    )


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # FastAPI's included router
        if included is not None:
            yield from _api_routes(included.routes)


def commit_in_endpoint_hops(app: FastAPI) -> int:
    """Wrap every sync endpoint (one without a session passes through); returns how many.

    Call it before the first request. FastAPI builds an included router's request handlers
    lazily from each route's `endpoint`, and a direct route's handler reads `dependant.call`
    on each request, so both are replaced; parameters are read through `__wrapped__`.
    Routers are module-level objects shared by every app: a route is wrapped once.
    """
    wrapped = 0
    for route in _api_routes(app.router.routes):
        call = route.endpoint
        if not _is_sync_function(call) or getattr(call, _WRAPPED, False):
            continue
        route.endpoint = _commits_in_hop(call)
        if route.dependant.call is call:
            route.dependant.call = route.endpoint
        wrapped += 1
    return wrapped
