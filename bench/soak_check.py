"""The soak's checker: what the database holds against what the clients recorded.

lost        accepted jobs that are not terminal once the drain is over
run twice   jobs with more than one `succeeded` event or more than one adapter artifact
5xx         responses >= 500 the clients received (SSE included)
missed      event ids an SSE client never received although it received a later one of
            the same job (or the stream ended with `end`), over all its reconnects
"""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.soak_clients import SLOW_S, Record
from persistence.db import session_scope
from persistence.models import Artifact, Job, JobEvent

TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Figures:
    accepted: int = 0
    accepted_by_clients: int = 0
    unrecorded: int = 0  # in the database but never answered to a client (should be 0)
    succeeded: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    cancelled: int = 0
    lost: int = 0
    run_twice: int = 0
    max_attempt: int = 0
    requests: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    server_errors: int = 0
    over_2s: int = 0
    connection_errors: int = 0
    streams: int = 0
    stream_reconnects: int = 0
    events_received: int = 0
    missed_events: int = 0
    duplicate_deliveries: int = 0
    latency: dict[str, tuple[int, float, float]] = field(default_factory=dict)  # n, p50, p99

    @property
    def targets_met(self) -> bool:
        return (self.lost, self.run_twice, self.server_errors, self.missed_events) == (0,) * 4


def _percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def check(factory: sessionmaker[Session], tenant_ids: list[uuid.UUID], record: Record) -> Figures:
    f = Figures()
    with session_scope(factory) as session:
        jobs = session.execute(
            select(Job.id, Job.status, Job.attempt, Job.error).where(Job.tenant_id.in_(tenant_ids))
        ).all()
        job_ids = [j.id for j in jobs]
        events: dict[str, list[tuple[int, str]]] = {}
        for job_id, seq, kind in session.execute(
            select(JobEvent.job_id, JobEvent.seq, JobEvent.type)
            .where(JobEvent.job_id.in_(job_ids))
            .order_by(JobEvent.seq)
        ):
            events.setdefault(str(job_id), []).append((seq, kind))
        adapters = Counter(
            str(j)
            for j in session.scalars(
                select(Artifact.job_id).where(
                    Artifact.job_id.in_(job_ids), Artifact.name == "adapter.tar"
                )
            )
        )
    recorded = {j for ids in record.created.values() for j in ids}
    f.accepted, f.accepted_by_clients = len(jobs), len(recorded)
    f.unrecorded = len({str(j.id) for j in jobs} - recorded)
    failed: Counter[str] = Counter()
    for job in jobs:
        f.max_attempt = max(f.max_attempt, job.attempt or 0)
        if job.status == "succeeded":
            f.succeeded += 1
        elif job.status == "failed":
            failed[(job.error or {}).get("code", "?")] += 1
        elif job.status == "cancelled":
            f.cancelled += 1
        else:
            f.lost += 1
        kinds = [k for _, k in events.get(str(job.id), [])]
        f.run_twice += int(kinds.count("succeeded") > 1 or adapters[str(job.id)] > 1)
    f.failed = dict(failed)
    _requests(f, record)
    _streams(f, record, events)
    return f


def _requests(f: Figures, record: Record) -> None:
    statuses: Counter[str] = Counter()
    by_kind: dict[str, list[float]] = {}
    for kind, status, seconds in record.requests:
        statuses[str(status)] += 1
        if isinstance(status, int):
            f.server_errors += int(status >= 500)
            f.over_2s += int(seconds > SLOW_S)
            by_kind.setdefault(kind, []).append(seconds)
        else:
            f.connection_errors += 1
    f.requests = len(record.requests)
    f.by_status = dict(sorted(statuses.items()))
    f.latency = {
        kind: (len(v), _percentile(v, 50), _percentile(v, 99)) for kind, v in by_kind.items()
    }


def _streams(f: Figures, record: Record, events: dict[str, list[tuple[int, str]]]) -> None:
    f.streams = len(record.streams)
    for log in record.streams:
        f.stream_reconnects += log.reconnects
        f.events_received += len(log.seqs)
        f.duplicate_deliveries += len(log.seqs) - len(set(log.seqs))
        stored = [seq for seq, _ in events.get(log.job_id, [])]
        if not log.seqs and not log.ended:
            continue
        upto = max(stored, default=0) if log.ended else max(log.seqs)
        seen = set(log.seqs)
        f.missed_events += sum(1 for s in stored if log.start_after < s <= upto and s not in seen)


def table(f: Figures, info: dict[str, Any]) -> str:
    """The soak's Markdown table: the four targets first, then the other figures."""
    failed = ", ".join(f"{k}: {v}" for k, v in f.failed.items()) or "0"
    rows = [
        ("jobs accepted (database / answered to clients)", f"{f.accepted} / {f.accepted_by_clients}"),  # noqa: E501
        ("jobs succeeded", f.succeeded),
        ("jobs failed (by code) / cancelled", f"{failed} / {f.cancelled}"),
        ("**jobs lost** (target 0)", f.lost),
        ("**jobs run twice** (target 0)", f.run_twice),
        ("highest attempt", f.max_attempt),
        ("requests", f.requests),
        ("**5xx responses** (target 0)", f.server_errors),
        (f"requests over {SLOW_S:g} s", f.over_2s),
        ("refused / timed-out connections (API restart)", f.connection_errors),
        ("responses by status", ", ".join(f"{k}: {v}" for k, v in f.by_status.items())),
        ("SSE streams / reconnects / events received", f"{f.streams} / {f.stream_reconnects} / {f.events_received}"),  # noqa: E501
        ("**events missed by SSE clients** (target 0)", f.missed_events),
        ("events delivered twice (after a reconnect)", f.duplicate_deliveries),
    ]  # fmt: skip
    for kind, (n, p50, p99) in sorted(f.latency.items()):
        rows.append((f"{kind}: n / p50 / p99 (s)", f"{n} / {p50:.3f} / {p99:.2f}"))
    for key, value in info.items():
        rows.append((key, value))
    lines = ["| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    verdict = "MET" if f.targets_met else "MISSED"
    lines.append(f"| targets (lost, run twice, 5xx, missed all 0) | {verdict} |")
    return "\n".join(lines)
