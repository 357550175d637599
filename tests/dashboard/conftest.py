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
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from clo.evaluate.language_section import LanguageOutcomes
from clo.evaluate.report import (
    AnswerSample,
    BaseRun,
    BenchmarkResult,
    DirectionStats,
    EvaluationReport,
    Interval,
    JudgeReport,
    LanguageRate,
    LanguageReport,
    LineResult,
    NllStats,
    PreferenceReport,
    VersusBaseReport,
    WinRate,
)
from clo.evaluate.stats import wilson_interval
from clo.evaluate.versus_base import PairedData, paired_comparisons
from clo.evaluate.versus_base import Settings as VersusSettings
from persistence.artifact_store import ArtifactStore, make_key
from persistence.db import session_scope
from persistence.repositories import leases
from persistence.settings import Settings
from tests.support.api import api_settings, job_body
from tests.support.database import database_fixtures, load_job  # noqa: F401
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


# The fixture's prompts, in the order an evaluation asks them (held-out first, report 1.2)
HELDOUT_SOURCE = "heldout:16"
SHIPPED_SOURCE = "shipped:de@1a2b3c4d5e6f"
SOURCES = ((HELDOUT_SOURCE, 0, 16), (SHIPPED_SOURCE, 16, 56))
N_PROMPTS = 56


def spread(n: int, k: int) -> list[bool]:
    """k True among n, evenly spread (so every prompt source gets its share)."""
    return [(i * k) // n != ((i + 1) * k) // n for i in range(n)]


def outcomes(usable: int, judged: int, lcb: int, english: int) -> LanguageOutcomes:
    """One model's per-prompt outcomes: `judged` answers long enough for the line check, of
    which `lcb` pass it and `english` are in English; answers past `judged` are too short."""
    short = [None] * (N_PROMPTS - judged)
    ok = spread(N_PROMPTS, usable)
    return LanguageOutcomes(
        usable=tuple(ok),
        lcb=(*spread(judged, lcb), *short),
        english=(*spread(judged, english)[::-1], *short),
        reasons=tuple(
            () if good else (("loop",) if i % 4 == 0 else ("wrong_language",))
            for i, good in enumerate(ok)
        ),
    )


def language_outcomes(seed: int) -> dict[str, tuple[LanguageOutcomes, LanguageOutcomes]]:
    """(trained, base) per prompt language; the base model is the same for every seed."""
    return {
        "target": (outcomes(36 - 4 * seed, 54, 40 - 4 * seed, 8), outcomes(20, 54, 30, 20)),
        "english": (outcomes(50, 56, 52, 52), outcomes(49, 56, 51, 51)),
    }


def nll_sequences(nll: float) -> list[tuple[float, int]]:
    """(summed log-prob, tokens) of 16 sequences, 900 tokens, token-mean NLL `nll`."""
    tokens = [60] * 4 + [55] * 12
    return [(-nll * t + (3.0 if i % 2 else -3.0), t) for i, t in enumerate(tokens)]


def versus_base(seed: int) -> VersusBaseReport:
    """The base model beside the trained one, computed by clo's own paired statistics."""
    lang = language_outcomes(seed)
    data = PairedData(
        trained_language={side: pair[0] for side, pair in lang.items()},
        base_language={side: pair[1] for side, pair in lang.items()},
        sources=SOURCES,
        nll={"target": (nll_sequences(2.1 + seed), nll_sequences(2.3))},
        logp_accuracy={"target": (spread(16, 12), spread(16, 9))},
        benchmarks={"belebele_target": (spread(20, 9 - seed), spread(20, 8), True)},
    )
    settings = VersusSettings(resamples=500)
    metrics, by_source = paired_comparisons(data, settings)
    base = BaseRun(
        model="tiny-lm",
        source="/models/tiny-lm",
        revision=None,
        how="adapter_disabled",
        cached=seed > 0,  # the first job on this base generated it, later ones reuse it
        cache_hits=2 if seed else 0,
        cache_misses=0 if seed else 2,
        generated_answers=0 if seed else 2 * N_PROMPTS,
        scored_benchmarks=0 if seed else 1,
    )
    return VersusBaseReport(
        base=base,
        bootstrap_resamples=settings.resamples,
        metrics=metrics,
        by_source=by_source,
    )


def evaluation_report(seed: int = 0) -> dict[str, Any]:
    """An evaluation report (schema 1.2) built with clo's own schema and statistics, so a
    schema change breaks here."""
    lang = language_outcomes(seed)

    def rate(code: str, o: LanguageOutcomes) -> LanguageRate:
        judged = sum(x is not None for x in o.lcb)
        ok, english = sum(x is True for x in o.lcb), sum(x is True for x in o.english)
        usable = sum(o.usable)
        low, high = wilson_interval(usable, len(o.usable))
        lcb_low, lcb_high = wilson_interval(ok, judged)
        return LanguageRate(
            expected_language=code,
            total=len(o.lcb),
            judged=judged,
            passed=ok,
            failed=judged - ok,
            no_kept_lines=len(o.lcb) - judged,
            pass_rate=ok / judged,
            english_rate=english / judged,
            pass_rate_interval=Interval(low=lcb_low, high=lcb_high),
            usable=usable,
            undecided=0,
            usable_rate=usable / len(o.usable),
            usable_interval=Interval(low=low, high=high),
            failure_reasons={
                r: sum(r in rs for rs in o.reasons) for r in ("wrong_language", "loop")
            },
        )

    def win(lang: str, wins: int, ties: int, losses: int) -> WinRate:
        n = wins + ties + losses
        p = (wins + 0.5 * ties) / n
        return WinRate(
            prompt_language=lang,
            n=n,
            wins=wins,
            ties=ties,
            losses=losses,
            win_rate=p,
            stderr=math.sqrt(p * (1 - p) / n),
            position_inconsistent=ties,
            invalid_verdicts=0,
        )

    def direction(d: Literal["en", "tgt"], acc: float) -> DirectionStats:
        return DirectionStats(
            direction=d,
            n=16,
            accuracy=acc,
            reward_margin_mean=0.42,
            chosen_reward_mean=0.3,
            rejected_reward_mean=-0.12,
            logp_accuracy=acc - 0.1,
            chosen_logp_mean=-40.0,
            rejected_logp_mean=-52.5,
        )

    samples = [
        AnswerSample(
            prompt_language="de",
            prompt="Wie kocht man Tee?",
            answer="Man erhitzt Wasser und gießt es über die Teeblätter.",
            verdict="pass",
            lines=[
                LineResult(
                    text="Man erhitzt Wasser und gießt es über die Teeblätter.",
                    words=8,
                    kept=True,
                    language="de",
                    ok=True,
                )
            ],
        ),
        AnswerSample(
            prompt_language="de",
            prompt="Was ist ein Vulkan?",
            answer="A volcano is an opening in the crust of the earth.",
            verdict="fail",
            lines=[
                LineResult(
                    text="A volcano is an opening in the crust of the earth.",
                    words=10,
                    kept=True,
                    language="en",
                    ok=False,
                )
            ],
        ),
    ]
    report = EvaluationReport(
        model=f"tiny-lm + adapter {seed}",
        target_language="de",
        target_language_name="German",
        heldout_size=16,
        config={"max_new_tokens": 32},
        prompt_sources=[HELDOUT_SOURCE, SHIPPED_SOURCE],
        language=LanguageReport(
            detector="lingua 2.1",
            detector_languages=["de", "en"],
            min_words_per_line=4,
            max_new_tokens=32,
            target_prompts=rate("de", lang["target"][0]),
            english_prompts=rate("en", lang["english"][0]),
            english_bias=8 / 54,
            samples=samples,
        ),
        preference=PreferenceReport(
            beta=0.1,
            reference="adapter_disabled",
            directions={"tgt": direction("tgt", 0.875 - 0.1 * seed), "en": direction("en", 0.75)},
            nll={
                "target": NllStats(sequences=16, tokens=900, nll=2.1 + seed, perplexity=8.2),
                "english": NllStats(sequences=16, tokens=800, nll=1.7, perplexity=5.5),
            },
        ),
        benchmarks=[
            BenchmarkResult(
                benchmark="belebele",
                language="de",
                source="local",
                n=20,
                accuracy=0.45 - 0.05 * seed,
                accuracy_norm=0.5,
            ),
            BenchmarkResult(
                benchmark="belebele",
                language="en",
                source="local",
                n=20,
                accuracy=0.55,
                accuracy_norm=0.6,
            ),
        ],
        judge=JudgeReport(
            judge={"kind": "local", "model": "tiny-judge", "endpoint": ""},
            prompt_version="1",
            prompt_sha256="0" * 64,
            baseline="base model",
            results={"tgt": win("de", 13 - seed, 2, 5 + seed), "en": win("en", 9, 4, 7)},
            samples=[],
        ),
        versus_base=versus_base(seed),
    )
    return report.model_dump(mode="json")


RATE_FIELDS_1_1 = (
    "pass_rate_interval",
    "usable",
    "undecided",
    "usable_rate",
    "usable_interval",
    "failure_reasons",
    "primary_failure_reasons",
)


def legacy_report(seed: int = 0) -> dict[str, Any]:
    """The report as a job written before schema 1.1 stored it: no base model, no prompt
    sources, no answer verdicts or intervals (what an older job's GET /evaluation returns)."""
    report = evaluation_report(seed)
    report["schema_version"] = "1.0"
    del report["versus_base"], report["prompt_sources"]
    language = report["language"]
    del language["verdict_version"], language["answer_verdicts"]
    for rate in (language["target_prompts"], language["english_prompts"]):
        for name in RATE_FIELDS_1_1:
            del rate[name]
    for sample in language["samples"]:
        del sample["usable"], sample["reasons"], sample["source"]
    EvaluationReport.model_validate(report)  # still a report clo loads
    return report


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
