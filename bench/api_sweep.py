"""The concurrency sweep of bench_api_load: list and events reads at 100/200/500 connections.

    python -m bench.bench_api_load --sweep 100,200,500 --duration 20

wrk counts only "non-2xx" and socket errors; the Lua below also tallies every response by
status, so a row says whether its errors were 500s (a bug), 503s with Retry-After (shed load
the client may retry) or timeouts (the server stalled). Issue 15 measured, before the fix,
100 concurrent list reads stalling 30 s and then answering 500.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import format_table

# Appended to each request script. `statuses` lives in the thread's Lua state; done() runs in
# the main state and copies each thread's table (wrk copies tables value by value).
STATUS_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses")) do total[code] = (total[code] or 0) + n end
  end
  for code, n in pairs(total) do io.write(string.format("STATUS %d %d\\n", code, n)) end
end
"""

LIST_LUA = """
request = function()
  return wrk.format("GET", "/v1/jobs?limit=20", {["Authorization"] = "Bearer %(key)s"})
end
"""

EVENTS_LUA = """
local ids = {%(ids)s}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/v1/jobs/" .. ids[(counter %% #ids) + 1] .. "/events",
                    {["Authorization"] = "Bearer %(key)s"})
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


@dataclass
class SweepRow:
    endpoint: str
    connections: int
    requests: int
    per_s: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int] = field(default_factory=dict)
    timeouts: int = 0
    socket_errors: int = 0  # connect/read/write errors, timeouts not included
    peak_connections: int = 0  # the API's Postgres connections, sampled every 0.2 s

    @property
    def errors(self) -> int:
        bad = sum(n for code, n in self.statuses.items() if not 200 <= code < 300)
        return bad + self.timeouts + self.socket_errors


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse(endpoint: str, connections: int, out: str) -> SweepRow:
    total = re.search(r"(\d+) requests in", out)
    per_s = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    row = SweepRow(
        endpoint,
        connections,
        int(total.group(1)) if total else 0,
        float(per_s.group(1)) if per_s else 0.0,
        _ms(p50.group(1)) if p50 else float("nan"),  # no latency when nothing completed
        _ms(p99.group(1)) if p99 else float("nan"),
    )
    for code, n in re.findall(r"^STATUS (\d+) (\d+)$", out, flags=re.M):
        row.statuses[int(code)] = int(n)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        connect, read, write, timeout = (int(g) for g in sock.groups())
        row.socket_errors, row.timeouts = connect + read + write, timeout
    return row


def run(
    endpoint: str,
    base: str,
    script: str,
    connections: int,
    seconds: float,
    timeout_s: float,
    tmp: Path,
    connections_in_use: Callable[[], int] | None = None,
) -> SweepRow:
    path = tmp / f"sweep_{connections}_{abs(hash(endpoint))}.lua"
    path.write_text(script + STATUS_LUA)
    cmd = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:.0f}s", "--latency"]
    cmd += ["--timeout", f"{timeout_s:.0f}s", "-s", str(path), base]
    peak = [0]
    stop = threading.Event()

    def sampler() -> None:
        while connections_in_use is not None and not stop.wait(0.2):
            peak[0] = max(peak[0], connections_in_use())

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 60, check=False
        )
    finally:
        stop.set()
        thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr or proc.stdout}")
    row = parse(endpoint, connections, proc.stdout)
    row.peak_connections = peak[0]
    return row


def sweep(
    base: str,
    key: str,
    job_ids: list[str],
    concurrencies: list[int],
    seconds: float,
    timeout_s: float,
    tmp: Path,
    connections_in_use: Callable[[], int] | None = None,
) -> list[SweepRow]:
    scripts = {
        "GET /v1/jobs?limit=20": LIST_LUA % {"key": key},
        "GET /v1/jobs/{id}/events": EVENTS_LUA
        % {"key": key, "ids": ",".join(f'"{i}"' for i in job_ids)},
    }
    rows = []
    for endpoint, script in scripts.items():
        for connections in concurrencies:
            rows.append(
                run(
                    endpoint, base, script, connections, seconds, timeout_s, tmp, connections_in_use
                )
            )
    return rows


def table(rows: list[SweepRow]) -> str:
    out = []
    for r in rows:
        by_status = ", ".join(f"{code}: {n}" for code, n in sorted(r.statuses.items()))
        out.append(
            [
                r.endpoint,
                r.connections,
                r.requests,
                round(r.per_s, 1),
                round(r.p50_ms, 1),
                round(r.p99_ms, 1),
                r.errors,
                by_status or "-",
                r.timeouts,
                r.socket_errors,
                r.peak_connections,
            ]
        )
    head = ["endpoint", "conns", "requests", "req/s", "p50 ms", "p99 ms", "errors"]
    tail = ["responses by status", "timeouts", "socket errors", "peak PG conns"]
    return format_table([*head, *tail], out)
