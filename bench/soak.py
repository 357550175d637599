"""Soak / chaos run on loopback: clients mixing every kind of request across 3 tenants while the
harness breaks things, then a checker that counts what was lost, run twice, failed or missed.

    python -m bench.soak                         # 10 minutes, 200 clients
    python -m bench.soak --minutes 1.25 --clients 30 --redis-every 20   # the suite's version

The stack is real processes: uvicorn (one process, fixed port), two Celery workers, the
reaper, a PRIVATE redis-server (own port: restarting it touches no one else) and a fresh
Postgres database on 127.0.0.1:5432 (dropped at the end). Jobs are tiny-qwen2 runs of a few
steps on the shipped parallel data. The chaos, at fixed fractions of the run:
- Redis killed and restarted (2 s outage) every `--redis-every` seconds (default 60);
- a worker running a job SIGKILLed (whole process group) and started again, twice (25%, 60%);
- a worker's pool process running a job paused (SIGSTOP) past its lease, then SIGCONT (45%);
- the API restarted once (SIGTERM, the same port again; 75%).
Then the clients stop, every accepted job is given `--drain` seconds to finish, and
bench/soak_check.py counts. Targets: lost 0, run twice 0, 5xx 0, missed events 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` and the service importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from bench.common import machine_line, save_result  # noqa: E402
from bench.soak_check import TERMINAL, Figures, check, table  # noqa: E402
from bench.soak_clients import Clients, Tenant  # noqa: E402
from persistence.db import make_engine, make_session_factory, session_scope  # noqa: E402
from persistence.models import Job  # noqa: E402
from service_cli.processes import free_port, start_api, stop, wait_http  # noqa: E402
from tests.reliability.harness import (  # noqa: E402
    LEASE_SECONDS,
    PrivateRedis,
    Stack,
    job_row,
    stack_env,
    train_spec,
)

logger = logging.getLogger("soak")
ADMIN_DSN = os.environ.get("CLO_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
PG_HOST = os.environ.get("CLO_BENCH_PG_HOST", "postgres@127.0.0.1:5432")
RESULTS = Path(__file__).resolve().parent / "results"
JOB_STEPS = 4
PAUSE_S = LEASE_SECONDS + 4  # past the lease: the reaper requeues, another worker takes over


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


class Chaos:
    """The fault schedule, run on a thread beside the clients' event loop."""

    def __init__(self, stack: Stack, redis: PrivateRedis, factory: Any, port: int) -> None:
        self.stack, self.redis, self.factory, self.port = stack, redis, factory, port
        self.log: list[str] = []
        self.stop = threading.Event()
        self.started = time.monotonic()

    def note(self, what: str) -> None:
        line = f"t={time.monotonic() - self.started:5.0f}s {what}"
        self.log.append(line)
        logger.info(line)

    def _running(self) -> tuple[str, Any] | None:
        """(worker name, row) of a job being trained now, if any."""
        with session_scope(self.factory) as session:
            ids = session.scalars(
                select(Job.id).where(Job.status == "running", Job.worker_id.is_not(None))
            ).all()
        for job_id in ids:
            row = job_row(self.factory, str(job_id))
            if row.status == "running" and row.worker_pid and row.worker_id:
                return row.worker_id.split("@")[0], row
        return None

    def _wait_running(self, timeout: float = 60) -> tuple[str, Any] | None:
        deadline = time.monotonic() + timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            if found := self._running():
                return found
            time.sleep(0.5)
        return None

    def restart_redis(self) -> None:
        self.redis.kill()
        self.note("redis killed")
        time.sleep(2)
        self.redis.start()
        self.note("redis restarted")

    def kill_worker(self) -> None:
        found = self._wait_running()
        if found is None:
            self.note("SIGKILL skipped: no job running")
            return
        name, row = found
        self.stack.kill(name)  # the whole group: the worker and its pool process
        self.note(f"SIGKILL worker {name} (pid {row.worker_pid}) at step {row.step}")
        self.stack.start_worker(name)

    def pause_worker(self) -> None:
        found = self._wait_running()
        if found is None:
            self.note("pause skipped: no job running")
            return
        name, row = found
        os.kill(row.worker_pid, signal.SIGSTOP)
        self.note(
            f"SIGSTOP {name} pool pid {row.worker_pid} for {PAUSE_S} s (lease {LEASE_SECONDS} s)"
        )
        time.sleep(PAUSE_S)
        os.kill(row.worker_pid, signal.SIGCONT)
        self.note(f"SIGCONT {name}")

    def restart_api(self) -> None:
        proc = self.stack.procs["api"]
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.wait(timeout=60)
        self.note(f"API stopped by SIGTERM in {time.monotonic() - started:.1f} s")
        self.stack.procs["api"] = start_api(self.stack.env, self.port, self.stack.logs / "api.log")
        wait_http(f"{self.stack.base}/healthz", self.stack.procs["api"], timeout=120)
        self.note(f"API up again after {time.monotonic() - started:.1f} s")

    def run(self, seconds: float, redis_every: float) -> None:
        plan: list[tuple[float, Callable[[], None]]] = [
            (seconds * 0.25, self.kill_worker),
            (seconds * 0.45, self.pause_worker),
            (seconds * 0.60, self.kill_worker),
            (seconds * 0.75, self.restart_api),
        ]
        at = redis_every
        while at < seconds:
            plan.append((at, self.restart_redis))
            at += redis_every
        for when, action in sorted(plan, key=lambda p: p[0]):
            if self.stop.wait(max(0.0, self.started + when - time.monotonic())):
                return
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - a failed fault is reported, not fatal
                self.note(f"{action.__name__} failed: {exc!r}")


def _tenants(factory: Any, n: int) -> tuple[list[Tenant], list[uuid.UUID]]:
    from persistence.repositories import tenants as tenants_repo

    tenants, ids = [], []
    with session_scope(factory) as session:
        for i in range(n):
            tenant = tenants_repo.create_tenant(session, f"soak-{i}-{uuid.uuid4().hex[:6]}")
            _, key = tenants_repo.create_api_key(session, tenant)
            tenants.append(Tenant(tenant.name, key.secret))
            ids.append(tenant.id)
    return tenants, ids


def soak(args: argparse.Namespace, tmp: Path) -> tuple[Figures, dict[str, Any]]:
    from persistence.migrate import upgrade_head
    from service_cli.demo import build_tiny_models

    db = f"clo_soak_{uuid.uuid4().hex[:10]}"
    url = f"postgresql+psycopg://{PG_HOST}/{db}"
    _admin(f'CREATE DATABASE "{db}"')
    redis = PrivateRedis(tmp / "redis")
    stack: Stack | None = None
    engine = make_engine(url)
    try:
        upgrade_head(url)
        factory = make_session_factory(engine)
        data = tmp / "data"
        data.mkdir()
        models = Path(args.models) if args.models else tmp / "models"
        build_tiny_models(models)
        (data / "models").symlink_to(models.resolve(), target_is_directory=True)
        redis.start()
        env = stack_env(
            url,
            data,
            CLO_BROKER_URL=redis.url,
            CLO_QUEUE=f"soak-{uuid.uuid4().hex[:8]}",
            CLO_MAX_ATTEMPTS="5",  # two SIGKILLs and a pause could all land on one job
            CLO_REQUEUE_AFTER_SECONDS="5",
            CLO_MAX_CONCURRENT_JOBS_PER_TENANT="100",
            CLO_MAX_QUEUED_JOBS_PER_TENANT="100000",
            CLO_SSE_POLL_SECONDS="0.5",
        )
        stack = Stack(env=env, logs=tmp / "logs")
        port = free_port()
        stack.procs["api"] = start_api(env, port, stack.logs / "api.log", access_log=False)
        stack.base = f"http://127.0.0.1:{port}"
        stack.start_reaper()
        for name in ("w1", "w2"):
            stack.start_worker(name)
        stack.wait_api()
        for name in ("w1", "w2"):
            stack.wait_worker_ready(name)
        tenants, tenant_ids = _tenants(factory, 3)
        by_name = dict(zip([t.name for t in tenants], tenant_ids, strict=True))

        def count_open(tenant: Tenant) -> int:
            with session_scope(factory) as session:
                return int(
                    session.scalar(
                        select(func.count()).where(
                            Job.tenant_id == by_name[tenant.name], Job.status.not_in(TERMINAL)
                        )
                    )
                    or 0
                )

        async def open_jobs(tenant: Tenant) -> int:
            return await asyncio.to_thread(count_open, tenant)

        seconds = args.minutes * 60
        clients = Clients(stack.base, tenants, train_spec(JOB_STEPS, 2))
        chaos = Chaos(stack, redis, factory, port)
        faults = threading.Thread(target=chaos.run, args=(seconds, args.redis_every), daemon=True)
        faults.start()
        started = time.monotonic()
        with _paused(getattr(args, "pause_pgid", None), chaos.note):
            _run_in_own_thread(lambda: asyncio.run(clients.run(args.clients, seconds, open_jobs)))
            chaos.stop.set()
            faults.join(timeout=120)
        ran = time.monotonic() - started
        chaos.note("clients stopped; draining")
        drained = _drain(factory, tenant_ids, args.drain)
        chaos.note(f"drain {'complete' if drained else 'timed out'}")
        figures = check(factory, tenant_ids, clients.record)
        info = {
            "run": f"{ran:.0f} s, {args.clients} clients, 3 tenants, 2 workers, drain {args.drain:.0f} s",  # noqa: E501
            "faults": "; ".join(chaos.log),
        }  # fmt: skip
        if not figures.targets_met or args.keep_logs:
            keep = Path(args.logs_dir)
            keep.mkdir(parents=True, exist_ok=True)
            for log in stack.logs.glob("*.log"):
                (keep / log.name).write_bytes(log.read_bytes()[-500_000:])
            info["logs"] = str(keep)
        return figures, info
    finally:
        if stack is not None:
            for name in list(stack.procs):
                stop(stack.procs.pop(name), timeout=10)
        redis.kill()
        engine.dispose()
        _admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _run_in_own_thread(run: Callable[[], object]) -> None:
    """Run the clients' event loop on a thread of its own: the calling thread may already
    run one (under pytest, Playwright's sync API keeps a loop running in the main thread for
    the whole session, and asyncio.run refuses to start inside it)."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="soak-clients")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


@contextmanager
def _paused(pgid: int | None, note: Callable[[str], None]) -> Iterator[None]:
    """SIGSTOP another process group (a long experiment sharing the CPU) while the clients
    run, and SIGCONT it afterwards whatever happens; a group that is gone is skipped."""
    if pgid:
        try:
            os.killpg(pgid, signal.SIGSTOP)
            note(f"process group {pgid} paused")
        except ProcessLookupError:
            pgid = None
    try:
        yield
    finally:
        if pgid:
            try:
                os.killpg(pgid, signal.SIGCONT)
                note(f"process group {pgid} resumed")
            except ProcessLookupError:
                pass


def _drain(factory: Any, tenant_ids: list[uuid.UUID], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(factory) as session:
            left = session.scalar(
                select(func.count()).where(
                    Job.tenant_id.in_(tenant_ids), Job.status.not_in(TERMINAL)
                )
            )
        if not left:
            return True
        time.sleep(1)
    return False


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--redis-every", type=float, default=60.0, help="seconds between restarts")
    p.add_argument("--drain", type=float, default=300.0, help="seconds for jobs to finish")
    p.add_argument("--models", help="a folder with tiny-qwen2/tiny-m2m100 (built if missing)")
    p.add_argument("--keep-logs", action="store_true", help="keep the process logs")
    p.add_argument("--logs-dir", default="/tmp/clo-soak-logs", help="where logs are kept")
    p.add_argument(
        "--pause-pgid", type=int, help="SIGSTOP this process group while the clients run"
    )
    p.add_argument("--out", type=Path, default=RESULTS / "soak.txt")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse(argv)
    command = "python -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        figures, info = soak(args, Path(tmp))
    text = "\n\n".join([command, machine_line(), table(figures, info)])
    print(text)
    save_result(args.out, text)
    print(json.dumps({"targets_met": figures.targets_met}))
    return 0 if figures.targets_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
