"""The FastAPI application factory; `api.app:app` is the module-level app for uvicorn."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from api.artifacts.links import LinkSigner
from api.artifacts.router import downloads_router
from api.artifacts.router import router as artifacts_router
from api.catalogue.router import router as catalogue_router
from api.checkpoints.router import router as checkpoints_router
from api.comparisons.router import router as comparisons_router
from api.dashboard.router import router as dashboard_router
from api.deadline import RequestDeadline
from api.deps import reject_repeated_query_parameters
from api.docs import install_docs
from api.enqueue import JobEnqueuer, SendFn, default_send
from api.errors import install_error_handlers
from api.exports.router import router as exports_router
from api.files.router import router as files_router
from api.hops import commit_in_endpoint_hops
from api.jobs.router import router as jobs_router
from api.lifecycle.router import router as lifecycle_router
from api.logs import configure_json_logging
from api.observe import ObserveRequests
from api.openai_compat.router import router as openai_router
from api.ops.draining import Draining
from api.ops.metrics import ApiMetrics, count_created
from api.ops.router import router as ops_router
from api.pagination import CursorCodec
from api.webhooks.router import job_deliveries_router
from api.webhooks.router import router as webhooks_router
from persistence.db import make_engine, make_session_factory
from persistence.migrate import upgrade_head
from persistence.settings import Settings, get_settings
from persistence.storage import open_store

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, enqueue: SendFn | None = None) -> FastAPI:
    """Build the API. `enqueue(job_id)` wakes a worker; the default sends `clo.run_job`."""
    settings = settings or get_settings()
    if settings.log_json:
        configure_json_logging()
    if settings.db_url.startswith("sqlite"):
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await run_in_threadpool(upgrade_head, settings.db_url)
        if settings.environment == "production":
            # Move the startup heap (~100k library objects) out of the cyclic GC's reach:
            # full collections walking it paused workers 70-100 ms every few seconds under
            # polling load (the p99 of GET /v1/jobs/{id}); frozen they take 10-20 ms. Not in
            # development: a test process starts many apps and would keep what each froze.
            gc.collect()
            gc.freeze()
        draining.install()  # after the server's own signal handlers, which it chains
        set_request_threads(settings.api_threads)
        yield
        # No draining.begin() here: uvicorn runs this after open responses are done, and
        # an app whose lifespan ended (a schema loader's) may still be served afterwards.
        draining.uninstall()
        engine.dispose()

    app = FastAPI(
        title="CLO training service",
        version="1.0",
        description="Teach English-centric LLMs to answer in another language "
        "(Cross-Lingual Optimization).",
        lifespan=lifespan,
        dependencies=[Depends(reject_repeated_query_parameters)],
        docs_url=None,  # self-served by install_docs: FastAPI's pages load from a CDN
        redoc_url=None,
    )
    engine = make_engine(settings.db_url, **api_pool(settings))
    draining = Draining()
    app.state.draining = draining
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.store = open_store(settings)  # local folder, or s3:// for many hosts
    app.state.link_signer = LinkSigner(settings)
    app.state.cursors = CursorCodec(settings)
    app.state.metrics = ApiMetrics(app.state)
    # Called once per job committed by this process, so it is where clo_jobs_created counts.
    send = count_created(enqueue or default_send(settings), app.state.metrics.jobs_created)
    app.state.enqueuer = JobEnqueuer(send, app.state.session_factory)

    install_error_handlers(app)
    for router in (
        jobs_router,
        lifecycle_router,
        exports_router,
        checkpoints_router,
        webhooks_router,
        job_deliveries_router,
        comparisons_router,
        artifacts_router,
        downloads_router,
        files_router,
        catalogue_router,
        openai_router,
        ops_router,
        dashboard_router,
    ):
        app.include_router(router)
    install_docs(app)
    commit_in_endpoint_hops(app)  # no pooled connection held across thread hops (api/hops)

    # Inside ObserveRequests, so the request log and metrics see its 503s.
    app.add_middleware(RequestDeadline, seconds=settings.request_deadline_seconds)
    app.add_middleware(
        ObserveRequests, metrics=app.state.metrics, max_request_bytes=settings.max_request_bytes
    )
    return app


def set_request_threads(threads: int) -> None:
    """The thread pool that runs sync endpoints and dependencies (AnyIO's default, 40).

    Every thread runnable at once competes with the event loop for the GIL, and a starved
    loop accepts, reads and answers late: at 500 concurrent job lists 40 threads gave 376
    answers/s with p99 8.7 s (connections were still being accepted 7 s in), 8 threads 486/s
    with p99 1.7 s (bench/RESULTS.md, issue 15). A request holds a thread only while its
    statements run, so a few keep the two cores and Postgres busy.
    """
    anyio.to_thread.current_default_thread_limiter().total_tokens = threads


def api_pool(settings: Settings) -> dict[str, Any]:
    """The API's pool: at least as many connections as request threads (CLO_API_THREADS;
    connections are held only inside a hop, so never more are in use; bench/RESULTS.md has
    the measured peak), a short wait for one, and a statement timeout, each ending as a 503
    rather than a hang."""
    if settings.db_url.startswith("sqlite"):
        return {}
    size = settings.db_pool_size
    return {
        "pool_size": size // 2 or 1,
        "max_overflow": size - (size // 2 or 1),
        "pool_timeout": settings.db_pool_timeout_seconds,
        "statement_timeout_s": settings.db_statement_timeout_seconds,
    }


_default_app: FastAPI | None = None


def __getattr__(name: str) -> FastAPI:
    # `uvicorn api.app:app` builds the app on first access, so importing this module
    # (tests, the worker) does not read the environment or open a database.
    global _default_app
    if name == "app":
        if _default_app is None:
            _default_app = create_app()
        return _default_app
    raise AttributeError(name)
