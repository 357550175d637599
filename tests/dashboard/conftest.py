"""Dashboard browser tests: the real API (uvicorn on an ephemeral port) over a fresh Postgres
database, jobs created over HTTP, worker writes through repositories.leases, and Debian's
chromium driven by Playwright."""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from persistence.artifact_store import ArtifactStore, make_key
from persistence.db import session_scope
from persistence.repositories import leases
from persistence.settings import Settings
from tests.support.api import api_settings, job_body
from tests.support.database import database_fixtures, load_job  # noqa: F401
from tests.support.evaluation_reports import evaluation_report
from tests.support.tenants import TenantKey, new_tenant
from worker.summaries import headline_metrics

CHROMIUM = os.environ.get("CLO_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"

pg_url, engine, factory = database_fixtures("clo_d")


@pytest.fixture(scope="session")
def settings(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return api_settings(
        pg_url,
        tmp_path_factory.mktemp("clo-dashboard"),
        broker_url="redis://127.0.0.1:6379/15",  # never used: enqueue is replaced below
        sse_poll_seconds=0.1,
    )


@pytest.fixture(scope="session")
def enqueued() -> list[str]:
    """Job ids the API woke a worker for; no worker runs here, the tests play its part."""
    return []


@pytest.fixture(scope="session")
def base_url(settings: Settings, enqueued: list[str]) -> Iterator[str]:
    """The real app served by uvicorn on 127.0.0.1 with an ephemeral port, in a thread."""
    app = create_app(settings, enqueue=enqueued.append)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="session")
def api(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        yield client


@pytest.fixture
def make_tenant(factory: sessionmaker[Session]) -> Callable[[], TenantKey]:
    """A new tenant with one API key (what `clo admin` does)."""
    return lambda: new_tenant(factory, "dash")


@pytest.fixture
def submit(api: httpx.Client) -> Callable[..., str]:
    """POST /v1/jobs as the tenant; returns the new job id."""

    def post(tenant: TenantKey, **overrides: Any) -> str:
        response = api.post("/v1/jobs", json=job_body(**overrides), headers=tenant.headers)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    return post


class WorkerSim:
    """Writes what a worker writes for one job, through the worker's own repository."""

    def __init__(self, factory: sessionmaker[Session], store: ArtifactStore, job_id: str) -> None:
        self.factory = factory
        self.store = store
        self.job_id = uuid.UUID(job_id)
        with session_scope(factory) as session:
            lease = leases.claim_job(session, self.job_id, "dashboard-test-worker", 600)
        assert lease is not None, "job was not claimable"
        self.lease = lease

    def _write(self, fn: Callable[..., bool], *args: Any, **kwargs: Any) -> None:
        with session_scope(self.factory) as session:
            assert fn(session, self.lease, *args, **kwargs), f"{fn.__name__} lost the lease"

    def stage(self, stage: str) -> None:
        self._write(leases.set_stage, stage)

    def progress(self, step: int, total: int, eta: float | None = None) -> None:
        percent = round(100.0 * step / total, 2)
        self._write(
            leases.record_progress, step=step, total_steps=total, percent=percent, eta_seconds=eta
        )

    def event(self, type_: str, message: str, data: dict[str, Any] | None = None) -> None:
        self._write(leases.add_event, type_, message, data)

    def metrics(self, rows: list[tuple[int, dict[str, Any]]]) -> None:
        self._write(leases.record_metrics, rows)

    def results(self, summary: dict[str, Any], evaluation: dict[str, Any] | None) -> None:
        self._write(leases.record_results, metrics_summary=summary, evaluation=evaluation)

    def artifact(self, name: str, kind: str, data: bytes) -> str:
        stored = self.store.write_bytes(make_key("jobs", str(self.job_id), name), data)
        self._write(leases.record_artifact, name, kind, stored)
        return stored.sha256

    def finish(self, status: str = "succeeded") -> None:
        self._write(leases.finish_job, status, message=f"job {status}")


@pytest.fixture
def worker(factory: sessionmaker[Session], settings: Settings) -> Callable[[str], WorkerSim]:
    store = ArtifactStore(settings.artifact_root)
    return lambda job_id: WorkerSim(factory, store, job_id)


def training_rows(steps: int, seed: float = 0.0) -> list[tuple[int, dict[str, float]]]:
    """Plausible per-step CLO metrics (the names clo.trainer logs), varying with `seed`."""
    rows = []
    for step in range(1, steps + 1):
        decay = math.exp(-step / (8.0 + seed))
        rows.append(
            (
                step,
                {
                    "loss": 0.3 + 0.5 * decay,
                    "nll": 1.2 + 0.8 * decay,
                    "cl_loss": 0.69 * decay + 0.05,
                    "margin_en": 0.4 * (1 - decay),
                    "margin_tgt": 0.9 * (1 - decay) + 0.1 * seed,
                    "accuracy_en": min(1.0, 0.5 + step / (2.0 * steps)),
                    "accuracy_tgt": min(1.0, 0.5 + step / (1.5 * steps)),
                    "lr": 5e-6 * min(1.0, step / 4),
                    "tokens_per_second": 900.0 + 10 * step,
                },
            )
        )
    return rows


@pytest.fixture
def finished_job(
    submit: Callable[..., str], worker: Callable[[str], WorkerSim]
) -> Callable[..., tuple[str, str]]:
    """Builds jobs taken through training and evaluation to succeeded."""

    def build(
        tenant: TenantKey,
        seed: int = 0,
        steps: int = 20,
        evaluation: dict[str, Any] | None = None,
        **job: Any,
    ) -> tuple[str, str]:
        report = evaluation_report(seed) if evaluation is None else evaluation
        job_id = submit(tenant, **job)
        return job_id, _finish(worker, job_id, report, steps, seed)

    return build


@pytest.fixture
def finished_comparison(
    api: httpx.Client, worker: Callable[[str], WorkerSim]
) -> Callable[..., dict[str, Any]]:
    """POST /v1/comparisons with runs (label, method, seed), each run taken to succeeded;
    returns the comparison as GET /v1/comparisons/{id} shows it then."""

    def build(tenant: TenantKey, runs: list[tuple[str, str, int]], name: str) -> dict[str, Any]:
        body = {
            "name": name,
            "base": job_body(),
            "runs": [{"label": label, "method": method} for label, method, _ in runs],
        }
        created = api.post("/v1/comparisons", json=body, headers=tenant.headers)
        assert created.status_code == 201, created.text
        comparison = created.json()
        for run, (_, _, seed) in zip(comparison["runs"], runs, strict=True):
            _finish(worker, run["job_id"], evaluation_report(seed), 10, seed)
        shown = api.get(f"/v1/comparisons/{comparison['id']}", headers=tenant.headers)
        return dict(shown.json())

    return build


def _finish(
    worker: Callable[[str], WorkerSim],
    job_id: str,
    evaluation: dict[str, Any],
    steps: int,
    seed: float,
) -> str:
    """Run a submitted job to succeeded with metrics and an evaluation; its adapter's sha256."""
    sim = worker(job_id)
    sim.stage("translating")
    sim.progress(32, 32)
    translation = {
        "source_language": "en",
        "target_language": "de",
        "model": "tiny-mt",
        "n_input": 32,
        "n_kept": 29,
        "n_dropped": 3,
        "dropped_by_reason": {"wrong_language": 2, "degenerate": 1},
        "cache_hits": 5,
        "model_calls": 12,
    }
    sim.event("translated", "kept 29 of 32", translation)
    sim.stage("training")
    rows = training_rows(steps, seed)
    sim.metrics(rows)
    sim.progress(steps, steps)
    sim.stage("evaluating")
    # as worker.summaries builds it: last training step, the evaluation's headline figures
    summary = {
        **rows[-1][1],
        **headline_metrics(evaluation),
        "train_examples": 29,
        "translation": translation,
    }
    sim.results(summary, evaluation)
    sim.stage("packaging")
    sha = sim.artifact("adapter.tar", "adapter", f"adapter of {job_id}".encode() * 100)
    sim.finish("succeeded")
    return sha


# ---- the browser --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no chromium at {CHROMIUM}: run scripts/install-browser (or set CLO_TEST_CHROMIUM)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@dataclass
class BrowserPage:
    page: Any
    base_url: str
    requests: list[str]
    errors: list[str]

    def open(self, path: str) -> None:
        self.page.goto(self.base_url + path)

    def sign_in(self, key: str) -> None:
        """Paste the key into the key panel, as a user does once per browser session."""
        self.page.fill("#api-key", key)
        self.page.click("#key-form button[type=submit]")
        self.page.wait_for_selector("#page-content:not([hidden])")

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def browser_page(browser: Any, base_url: str) -> Iterator[BrowserPage]:
    """A fresh browser context (own sessionStorage) on a laptop-sized viewport.

    Every request the page makes is recorded: after the test, all must have gone to the API's
    own origin, and no script error may have happened.
    """
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    wrapped = BrowserPage(page, base_url, [], [])
    page.on("request", lambda request: wrapped.requests.append(request.url))
    page.on("pageerror", lambda error: wrapped.errors.append(str(error)))
    page.on(
        "console",
        lambda msg: (
            wrapped.errors.append(msg.text)
            if msg.type == "error" and "status of 4" not in msg.text
            else None
        ),
    )
    try:
        yield wrapped
    finally:
        context.close()
    origin = urlsplit(base_url).netloc
    foreign = [
        u
        for u in wrapped.requests
        if urlsplit(u).scheme in ("http", "https") and urlsplit(u).netloc != origin
    ]
    assert not foreign, f"requests to other hosts: {foreign}"
    assert not wrapped.errors, f"browser errors: {wrapped.errors}"
