"""Run the fault-injection scenarios (tests/reliability) and print one table of their figures.

    python -m bench.reliability_report            # all scenarios, one after another
    python -m bench.reliability_report -k redis   # a subset (pytest -k expression)

Each scenario is a pytest test with real processes (API, Celery workers, reaper, private
Redis/Postgres where it restarts them) that asserts its figures; this script only collects
what they measured (tests/reliability/harness.py `record`) and tabulates it. Needs the
test services: Postgres on 127.0.0.1:5432 and Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REPORT_ENV = "CLO_RELIABILITY_REPORT"  # tests/reliability/harness.py reads the same name
COLUMNS = [
    ("scenario", "scenario"),
    ("accepted", "jobs accepted"),
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("steps_redone", "steps redone"),
    ("recover_s", "time to recover (s)"),
]
MAIN_KEYS = {key for key, _ in COLUMNS}


def run_scenarios(selection: str | None) -> tuple[int, list[dict[str, Any]], float]:
    """Run the tests with the report file set; (pytest exit code, records, wall seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "figures.jsonl"
        cmd = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider"]
        if selection:
            cmd += ["-k", selection]
        started = time.monotonic()
        done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, REPORT_ENV: str(report)})
        wall = time.monotonic() - started
        lines = report.read_text().splitlines() if report.exists() else []
    return done.returncode, [json.loads(line) for line in lines], wall


def table(records: list[dict[str, Any]]) -> str:
    """A Markdown table: the common columns, then each scenario's own figures as notes."""
    head = "| " + " | ".join(title for _, title in COLUMNS) + " | other figures |"
    rule = "|" + "---|" * (len(COLUMNS) + 1)
    rows = []
    for rec in records:
        cells = [str(rec.get(key, "-")) for key, _ in COLUMNS]
        extra = ", ".join(f"{k}={v}" for k, v in rec.items() if k not in MAIN_KEYS)
        rows.append("| " + " | ".join(cells) + f" | {extra} |")
    return "\n".join([head, rule, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="selection", help="pytest -k expression to pick scenarios")
    args = parser.parse_args(argv)
    code, records, wall = run_scenarios(args.selection)
    print()
    print(table(records))
    print(f"\n{len(records)} scenario(s) in {wall:.0f}s; pytest exit code {code}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
