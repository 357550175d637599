"""The service API under load: GET /v1/jobs/{id}, GET /v1/jobs (a page of 20) and POST /v1/jobs
on loopback, Postgres behind.

    python -m bench.bench_api_load                  # 2 uvicorn workers, 20 s per endpoint
    python -m bench.bench_api_load --duration 10 --connections 32
    python -m bench.bench_api_load --sweep 100,200,500   # list + events at each concurrency

Creates a fresh Postgres database (migrated with Alembic), tenants and API keys, starts
uvicorn on 127.0.0.1 in production settings (Redis broker on a private queue, JSON request
logs to a file), seeds jobs through the API, then drives each endpoint with wrk
(`apt-get install wrk`) for a fixed time. Everything it created is dropped afterwards.
Targets: >= 500 status reads/s with p99 < 100 ms, zero errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` and the service importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import api_sweep  # noqa: E402
from bench.common import format_table, load_average, machine_line, save_result  # noqa: E402
from service_cli.processes import free_port, start_api  # noqa: E402

logger = logging.getLogger(__name__)

ADMIN_DSN = os.environ.get("CLO_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
PG_HOST = os.environ.get("CLO_BENCH_PG_HOST", "postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("CLO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {
    "bench-lm": {"source": "/models/bench-lm", "kind": "causal_lm"},
    "bench-mt": {"source": "/models/bench-mt", "kind": "translator"},
}
JOB_BODY = {
    "base_model": "bench-lm",
    "target_language": "de",
    "data_size": 64,
    "translator": {"model": "bench-mt"},
}
TARGET_READS_PER_S = 500
TARGET_P99_MS = 100

GET_LUA = """
local ids = {%(ids)s}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/v1/jobs/" .. ids[(counter %% #ids) + 1],
                    {["Authorization"] = "Bearer %(key)s"})
end
"""

# The jobs page of the dashboard polls this: a page of 20 of the tenant's jobs.
LIST_LUA = """
request = function()
  return wrk.format("GET", "/v1/jobs?limit=20", {["Authorization"] = "Bearer %(key)s"})
end
"""

POST_LUA = """
local keys = {%(keys)s}
local body = '%(body)s'
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/v1/jobs",
                    {["Authorization"] = "Bearer " .. keys[(counter %% #keys) + 1],
                     ["Content-Type"] = "application/json"}, body)
end
"""


@dataclass
class LoadResult:
    name: str
    requests: int
    seconds: float
    per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def create_tenants(db_url: str, count: int) -> list[str]:
    """API key secrets of `count` fresh tenants (each POST stream takes a tenant lock)."""
    from persistence.db import make_engine, make_session_factory, session_scope
    from persistence.repositories import tenants as tenants_repo

    engine = make_engine(db_url)
    keys = []
    try:
        with session_scope(make_session_factory(engine)) as session:
            for _ in range(count):
                tenant = tenants_repo.create_tenant(session, f"bench-{uuid.uuid4().hex[:12]}")
                _, new = tenants_repo.create_api_key(session, tenant)
                keys.append(new.secret)
    finally:
        engine.dispose()
    return keys


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}; see its log")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"API not ready at {base} after {timeout_s:.0f} s")


def seed_jobs(base: str, key: str, count: int) -> list[str]:
    import httpx

    ids = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(count):
            r = client.post("/v1/jobs", json=JOB_BODY)
            if r.status_code != 201:
                raise RuntimeError(f"seeding a job failed: {r.status_code} {r.text[:300]}")
            ids.append(r.json()["id"])
    return ids


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(name: str, out: str, seconds: float) -> LoadResult:
    """Requests/s, p50/p99 and errors (non-2xx + socket errors) from `wrk --latency` output."""
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    per_s = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return LoadResult(name, total, seconds, per_s, p50, p99, errors)


def run_wrk(
    name: str, base: str, script: str, connections: int, seconds: float, tmp: Path
) -> LoadResult:
    path = tmp / f"{name.replace(' ', '_').replace('/', '_')}.lua"
    path.write_text(script)
    cmd = [
        "wrk",
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{seconds:.0f}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(path),
        base,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr or proc.stdout}")
    logger.debug(proc.stdout)
    return parse_wrk(name, proc.stdout, seconds)


def scenario(args: argparse.Namespace, tmp: Path) -> tuple[list[LoadResult], dict[str, Any]]:
    from persistence.migrate import upgrade_head

    db = f"clo_bench_{uuid.uuid4().hex[:12]}"
    url = f"postgresql+psycopg://{PG_HOST}/{db}"
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{db}"')
    proc = None
    try:
        upgrade_head(url)
        keys = create_tenants(url, max(1, args.tenants))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "CLO_ENVIRONMENT": "production",
            "CLO_DATABASE_URL": url,
            "CLO_BROKER_URL": REDIS_URL,
            "CLO_QUEUE": queue,
            "CLO_ADMIN_SECRET": secrets.token_hex(16),
            "CLO_MODELS": json.dumps(MODELS),
            "CLO_DATA_DIR": str(tmp / "data"),
            "CLO_MIGRATE_ON_START": "false",
            "CLO_MAX_CONCURRENT_JOBS_PER_TENANT": "1000000",
            "CLO_MAX_QUEUED_JOBS_PER_TENANT": "1000000",  # no worker: every job stays queued
        }
        proc = start_api(env, port, tmp / "uvicorn.log", workers=args.workers, access_log=False)
        wait_ready(base, proc)
        ids = seed_jobs(base, keys[0], args.seed_jobs)
        get_script = GET_LUA % {"ids": ",".join(f'"{i}"' for i in ids), "key": keys[0]}
        post_script = POST_LUA % {
            "keys": ",".join(f'"{k}"' for k in keys),
            "body": json.dumps(JOB_BODY),
        }
        run_wrk("warm-up", base, get_script, args.connections, 3, tmp)  # JIT-free, but warms pools
        info = {
            "workers": args.workers,
            "connections": args.connections,
            "post_connections": args.post_connections,
            "tenants": len(keys),
            "seed_jobs": len(ids),
            "duration_s": args.duration,
        }
        if args.sweep:
            concurrencies = [int(c) for c in args.sweep.split(",")]
            rows = api_sweep.sweep(
                base,
                keys[0],
                ids,
                concurrencies,
                args.duration,
                args.timeout,
                tmp,
                lambda: _connections(db),
            )
            info = {**info, "sweep": concurrencies, "wrk_timeout_s": args.timeout}
            return rows, info  # type: ignore[return-value]
        results = []
        list_script = LIST_LUA % {"key": keys[0]}
        for name, script, conns in (
            ("GET /v1/jobs/{id}", get_script, args.connections),
            ("GET /v1/jobs?limit=20", list_script, args.connections),
            ("POST /v1/jobs", post_script, args.post_connections),
        ):
            load_before = load_average()
            res = run_wrk(name, base, script, conns, args.duration, tmp)
            print(
                f"  {name}: {res.per_s:.0f} req/s, p99 {res.p99_ms:.1f} ms, "
                f"{res.errors} errors (load avg before {load_before})",
                file=sys.stderr,
            )
            results.append(res)
        return results, info
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        _admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        _drop_queue(queue)


def _connections(db: str) -> int:
    """The API's open connections to the bench database (its pool's size in use)."""
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (db,),
        ).fetchone()
    return int(row[0]) if row else 0


def _drop_queue(queue: str) -> None:
    """Delete the wake-up messages this run left on its private Redis queue."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        client.delete(queue, f"_kombu.binding.{queue}")
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the results
        logger.warning("could not delete Redis queue %s: %s", queue, exc)


def table(results: list[LoadResult]) -> str:
    rows = []
    for r in results:
        reads = r.name == "GET /v1/jobs/{id}"  # the polled status read carries the target
        target = (
            f">= {TARGET_READS_PER_S}/s, p99 < {TARGET_P99_MS} ms, 0 errors"
            if reads
            else "0 errors"
        )
        met = r.errors == 0 and (
            not reads or (r.per_s >= TARGET_READS_PER_S and r.p99_ms < TARGET_P99_MS)
        )
        rows.append(
            [
                r.name,
                r.requests,
                round(r.per_s, 1),
                round(r.p50_ms, 1),
                round(r.p99_ms, 1),
                r.errors,
                target,
                "MET" if met else "MISSED",
            ]
        )
    return format_table(
        ["endpoint", "requests", "req/s", "p50 ms", "p99 ms", "errors", "target", "result"], rows
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    p.add_argument("--connections", type=int, default=16, help="wrk connections for GET")
    p.add_argument("--post-connections", type=int, default=8, help="wrk connections for POST")
    p.add_argument("--tenants", type=int, default=8, help="tenants the POSTs rotate over")
    p.add_argument("--seed-jobs", type=int, default=50, help="jobs created before the reads")
    p.add_argument("--duration", type=float, default=20, help="seconds per endpoint")
    p.add_argument("--sweep", help="comma-separated concurrencies: list + events reads only")
    p.add_argument("--timeout", type=float, default=10, help="wrk timeout per request, --sweep")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    args = parse(argv)
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        raise SystemExit("wrk not found: install it (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        results, info = scenario(args, Path(tmp))
    rows = api_sweep.table(results) if args.sweep else table(results)  # type: ignore[arg-type]
    out = args.out or RESULTS / ("api_sweep.txt" if args.sweep else "api_load.txt")
    text = "\n\n".join(
        [
            "API under load (wrk on loopback, uvicorn + Postgres + Redis on the same machine)",
            machine_line(),
            rows,
            "settings: " + json.dumps(info),
        ]
    )
    print(text)
    save_result(out, text)


if __name__ == "__main__":
    main()
