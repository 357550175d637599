"""The reaper: expired leases back to the queue (or failed at the cap), lost wake-ups re-sent.

Run it as its own small process (`python -m worker.reaper`), one per deployment; running
two is harmless because every change is a conditional UPDATE and duplicate wake-ups are
no-ops for the worker.
"""

from __future__ import annotations

import argparse
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.logs import bind_job, configure_logging
from persistence.repositories import events as events_repo
from persistence.repositories import jobs as jobs_repo
from persistence.repositories import leases
from persistence.settings import get_settings
from worker.admission import wake_admitted
from worker.config import get_worker_settings
from worker.export_reaper import resend_stalled_exports

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReapReport:
    requeued: int
    failed: int
    cancelled: int
    resent: int


def reap_once(
    factory: sessionmaker[Session], requeue_after_seconds: float, reap_leases: bool = True
) -> ReapReport:
    """One pass: settle expired leases, then (re)send wake-ups of queued jobs without one."""
    reaped: list[leases.ReapedJob] = []
    if reap_leases:
        with session_scope(factory) as session:
            reaped = leases.reap_expired(session)
    # Requeued jobs need a message now: their old one was consumed by the lost worker.
    to_send = [r.job_id for r in reaped if r.outcome == "requeued"]
    with session_scope(factory) as session:
        to_send += jobs_repo.queued_without_message(session, requeue_after_seconds)
    sent = [job_id for job_id in dict.fromkeys(to_send) if _resend(factory, job_id)]
    if sent:
        with session_scope(factory) as session:
            jobs_repo.mark_enqueued(session, sent)
    resend_stalled_exports(factory, requeue_after_seconds)  # exports' lost wake-ups too
    # A job the reaper ended frees a running slot of its tenant: wake its next held jobs.
    for ended in (r for r in reaped if r.outcome in ("failed", "cancelled")):
        wake_admitted(factory, ended.job_id, get_settings())
    outcomes = [r.outcome for r in reaped]
    report = ReapReport(
        outcomes.count("requeued"), outcomes.count("failed"), outcomes.count("cancelled"), len(sent)
    )
    if reaped or sent:
        logger.info("reaper: %s", report)
    return report


def _resend(factory: sessionmaker[Session], job_id: uuid.UUID) -> bool:
    """Re-send a job's wake-up with the creating request's id (its header, this log line)."""
    from worker.enqueue import enqueue_job

    with session_scope(factory) as session:
        request_id = events_repo.creating_request_id(session, job_id)
    with bind_job(str(job_id), request_id):
        return enqueue_job(job_id)


def run_forever(
    factory: sessionmaker[Session],
    interval_seconds: float,
    requeue_after_seconds: float,
    stop: threading.Event | None = None,
    outage_grace_seconds: float = 0.0,
) -> None:
    """Reap every interval. After a database outage, leases are left alone for
    `outage_grace_seconds` (a lease length): live workers could not renew them while the
    database was away, and need a heartbeat's time to do so before they count as lost."""
    stop = stop or threading.Event()
    reap_leases_from = 0.0  # monotonic time; inf while the database is unreachable
    while not stop.is_set():
        now = time.monotonic()
        try:
            reap_once(factory, requeue_after_seconds, reap_leases=now >= reap_leases_from)
        except Exception:  # noqa: BLE001 - keep reaping through DB or broker blips
            logger.exception("reaper pass failed; retrying")
            reap_leases_from = math.inf
        else:
            if reap_leases_from == math.inf:
                logger.info("database back; reaping leases again in %.0fs", outage_grace_seconds)
                reap_leases_from = now + outage_grace_seconds
        stop.wait(interval_seconds)


def main(argv: list[str] | None = None) -> None:
    from worker.runner import session_factory

    ws = get_worker_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="Run one pass and exit.")
    parser.add_argument("--interval", type=float, default=ws.reaper_interval_seconds)
    args = parser.parse_args(argv)
    configure_logging(json_lines=get_settings().log_json)  # the API's and worker's setup
    if args.once:
        print(reap_once(session_factory(), ws.requeue_after_seconds))
        return
    run_forever(
        session_factory(),
        args.interval,
        ws.requeue_after_seconds,
        outage_grace_seconds=get_settings().lease_seconds,
    )


if __name__ == "__main__":
    main()
