"""Real processes for the fault-injection tests: private Redis and Postgres servers that a test
may kill and restart, and the service stack (API, Celery workers, reaper) on top of them.

Process starting reuses service_cli.processes (the demo's helpers); the service environment reuses
tests/worker/conftest.py's `_service_env`, with leases short enough to expire within a test.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.models import Artifact, Job, JobEvent, JobMetric, TranslationCacheEntry
from service_cli.processes import free_port, spawn, start_api, start_worker, wait_http
from tests.support.specs import train_spec as train_spec  # re-exported for the scenarios
from tests.support.tenants import new_tenant
from tests.worker.conftest import _service_env

T = TypeVar("T")

# Leases short enough that a killed worker's job is reaped within seconds.
LEASE_SECONDS = 6
HEARTBEAT_SECONDS = 2
TERMINAL = {"succeeded", "failed", "cancelled"}


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.1,
    context: Callable[[], str] = lambda: "",
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f}s\n{context()}")
        time.sleep(interval)


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the process group a helper started (a Celery worker's pool children too)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# ---- private servers --------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test alone, on a free port, that the test may kill and restart.

    No persistence: a restart loses every queued message, as a crashed cache node would.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.folder), "--daemonize", "no",
        ]  # fmt: skip
        with open(self.folder / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_until(lambda: self._pings(client), 20, "private redis up")

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None


class PrivatePostgres:
    """A Postgres cluster of this test alone (initdb in a temp dir, trust auth, a free port).

    initdb refuses to run as root, so the cluster belongs to the `postgres` OS user.
    """

    BIN = Path(os.environ.get("CLO_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="clo-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_postgres: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_postgres = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        subprocess.run(
            [str(self.BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
             "--no-sync", "-E", "UTF8"],
            cwd=self.root, check=True, capture_output=True, **self._as_postgres,
        )  # fmt: skip

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        cmd = [
            str(self.BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
            # Throwaway data: durability settings off for speed.
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        with open(self.root / "postgres.log", "ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **self._as_postgres,
            )  # fmt: skip
        wait_until(self._accepts, 30, "private postgres up", context=self.log_tail)

    def _accepts(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres", "postgresql"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url("postgres", "postgresql"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): sessions are cut, as in a Postgres restart or failover."""
        if self.proc is not None:
            kill_group(self.proc, signal.SIGINT)
            self.proc = None

    def log_tail(self) -> str:
        log = self.root / "postgres.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def destroy(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)


# ---- the service stack ------------------------------------------------------------------


def stack_env(pg_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    """Service env (own queue, own Redis db) with short leases and a fast reaper."""
    env = _service_env(pg_url, data_dir)
    env.update(
        CLO_LEASE_SECONDS=str(LEASE_SECONDS),
        CLO_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
        CLO_REAPER_INTERVAL_SECONDS="1",
        CLO_REQUEUE_AFTER_SECONDS="30",
    )
    env.update(overrides)
    return env


@dataclass
class Stack:
    """API, workers and reaper of one test; `close()` kills every process it started."""

    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    base: str = ""

    def start_api(self) -> str:
        port = free_port()
        self.procs["api"] = start_api(self.env, port, self.logs / "api.log")
        self.base = f"http://127.0.0.1:{port}"
        return self.base

    def wait_api(self) -> None:
        wait_http(f"{self.base}/healthz", self.procs["api"], timeout=120)

    def start_worker(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A Celery worker; `env` overrides the stack's (another host's data and work dirs)."""
        env = {**self.env, **(env or {})}
        proc = start_worker(env, env["CLO_QUEUE"], f"{name}@reliability",
                            self.logs / f"{name}.log")  # fmt: skip
        self.procs[name] = proc
        return proc

    def start(
        self, workers: tuple[str, ...] = ("w1",), reaper: bool = True, wait_ready: bool = True
    ) -> None:
        """API, reaper and workers started; returns once the API answers (and, with
        wait_ready, once every worker consumes)."""
        self.start_api()
        if reaper:
            self.start_reaper()
        for name in workers:
            self.start_worker(name)
        self.wait_api()
        if wait_ready:
            for name in workers:
                self.wait_worker_ready(name)

    def start_reaper(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "worker.reaper", "--interval", "1"]
        proc = spawn(cmd, self.env, self.logs / "reaper.log")
        self.procs["reaper"] = proc
        return proc

    def wait_worker_ready(self, name: str, timeout: float = 120) -> None:
        """Celery logs 'ready.' once it consumes; before that a sent task just waits."""
        log = self.logs / f"{name}.log"
        proc = self.procs[name]

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker {name} exited early\n{self.tail()}")
            return log.exists() and " ready." in log.read_text(errors="replace")

        wait_until(ready, timeout, f"worker {name} ready", interval=0.3, context=self.tail)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        kill_group(self.procs.pop(name), sig)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}"
            for p in sorted(self.logs.glob("*.log"))
        )

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)


def send_wakeup(env: dict[str, str], job_id: str) -> None:
    """Publish one more `clo.run_job(job_id)` message, as a redelivery would."""
    code = (
        "import sys; from worker.enqueue import enqueue_job; sys.exit(not enqueue_job(sys.argv[1]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, job_id],
        env={**os.environ, **env}, cwd=Path(__file__).resolve().parents[2],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


# ---- API and database probes ------------------------------------------------------------


def api_key_for(factory: sessionmaker[Session]) -> str:
    return new_tenant(factory, "rel").key


def submit(base: str, key: str, spec: dict[str, Any]) -> str:
    response = httpx.post(f"{base}/v1/jobs", json=spec,
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@dataclass(frozen=True)
class JobRow:
    status: str
    stage: str | None
    step: int | None
    attempt: int
    worker_id: str | None
    lease_token: uuid.UUID | None
    checkpoint_step: int | None
    error: dict[str, Any] | None

    @property
    def worker_pid(self) -> int | None:
        """The pool process running the job: worker ids are `hostname:pid`."""
        match = re.search(r":(\d+)$", self.worker_id or "")
        return int(match.group(1)) if match else None


def job_row(factory: sessionmaker[Session], job_id: str) -> JobRow:
    with session_scope(factory) as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        return JobRow(job.status, job.stage, job.step, job.attempt, job.worker_id,
                      job.lease_token, job.checkpoint_step, job.error)  # fmt: skip


def wait_finished(
    factory: sessionmaker[Session], job_id: str, timeout: float, what: str, stack: Stack
) -> JobRow:
    """The job's row once it reached a terminal status."""
    return wait_until(
        lambda: (r := job_row(factory, job_id)).status in TERMINAL and r,
        timeout,
        what,
        context=stack.tail,
    )


def event_types(factory: sessionmaker[Session], job_id: str) -> list[str]:
    with session_scope(factory) as session:
        return list(
            session.scalars(
                select(JobEvent.type)
                .where(JobEvent.job_id == uuid.UUID(job_id))
                .order_by(JobEvent.seq)
            )
        )


def metric_steps(factory: sessionmaker[Session], job_id: str) -> list[tuple[int, Any]]:
    """(step, created_at) of every stored training-metrics row."""
    with session_scope(factory) as session:
        rows = session.execute(
            select(JobMetric.step, JobMetric.created_at).where(
                JobMetric.job_id == uuid.UUID(job_id)
            )
        ).all()
    return sorted((int(s), t) for s, t in rows)


def artifact_names(factory: sessionmaker[Session], job_id: str) -> list[str]:
    with session_scope(factory) as session:
        return sorted(
            session.scalars(select(Artifact.name).where(Artifact.job_id == uuid.UUID(job_id)))
        )


def translation_cache_size(factory: sessionmaker[Session]) -> int:
    with session_scope(factory) as session:
        return int(session.scalar(select(func.count()).select_from(TranslationCacheEntry)) or 0)


def stored_files(data_dir: Path, job_id: str) -> list[str]:
    """Every file the artifact store holds for a job (partials would show up here too)."""
    folder = data_dir / "artifacts" / "jobs" / job_id
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---- figures ----------------------------------------------------------------------------

# bench/reliability_report.py sets this to collect every scenario's figures into one table.
REPORT_ENV = "CLO_RELIABILITY_REPORT"


def outcomes(factory: sessionmaker[Session], job_ids: list[str]) -> dict[str, int]:
    """Accepted / succeeded / failed / lost (never terminal) / duplicated (a second success
    or a second adapter) over the jobs a scenario submitted."""
    counts = {"accepted": len(job_ids), "succeeded": 0, "failed": 0, "lost": 0, "duplicated": 0}
    for job_id in job_ids:
        status = job_row(factory, job_id).status
        if status in ("succeeded", "failed"):
            counts[status] += 1
        elif status not in TERMINAL:
            counts["lost"] += 1
        successes = event_types(factory, job_id).count("succeeded")
        adapters = artifact_names(factory, job_id).count("adapter.tar")
        counts["duplicated"] += int(successes > 1 or adapters > 1)
    return counts


def record(scenario: str, **figures: Any) -> None:
    """Print a scenario's measured figures (pytest -s) and append them to the report file."""
    print(f"\n{scenario}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"scenario": scenario, **figures}) + "\n")
