"""The soak/chaos run (bench/soak.py), short: 75 s, 30 clients over 3 tenants, while a private
Redis restarts every 20 s, a worker running a job is SIGKILLed twice, one is paused past its
lease and the API restarts once. Nothing lost, nothing run twice, no 5xx, no SSE event missed.

`python -m bench.soak` is the 10-minute, 200-client version (figures in bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.soak import soak
from tests.reliability.harness import record

pytestmark = pytest.mark.slow


def test_short_soak_loses_nothing_runs_nothing_twice_no_5xx_no_missed_event(
    tiny_models: Path, tmp_path: Path
) -> None:
    args = argparse.Namespace(
        minutes=1.25,
        clients=30,
        redis_every=20.0,
        drain=240.0,
        models=str(tiny_models),
        keep_logs=False,
        logs_dir=str(tmp_path / "kept-logs"),
    )
    figures, info = soak(args, tmp_path)
    faults = info["faults"]
    summary = f"{figures}\n{faults}"
    # The faults happened (a skipped one would make the zeros below cheap).
    assert faults.count("SIGKILL worker") == 2, summary
    assert "SIGSTOP" in faults and "SIGCONT" in faults, summary
    assert "API up again" in faults and faults.count("redis restarted") >= 3, summary
    assert figures.accepted > 0 and figures.streams > 0 and figures.events_received > 0, summary
    # The four targets.
    assert figures.lost == 0, summary
    assert figures.run_twice == 0, summary
    assert figures.server_errors == 0, summary
    assert figures.missed_events == 0, summary
    assert figures.succeeded == figures.accepted, summary
    record(
        "soak (75 s, 30 clients, Redis every 20 s, 2 SIGKILL, 1 pause, API restart)",
        accepted=figures.accepted,
        succeeded=figures.succeeded,
        failed=sum(figures.failed.values()),
        lost=figures.lost,
        duplicated=figures.run_twice,
        requests=figures.requests,
        server_errors=figures.server_errors,
        over_2s=figures.over_2s,
        missed_events=figures.missed_events,
        reconnects=figures.stream_reconnects,
    )
