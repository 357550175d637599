"""Admission: per-tenant limits on running jobs, fair order between tenants, a bound on queued.

A tenant may have up to `running_cap` jobs running; more wait `queued` (up to the queued bound,
refused with 429 past it). Fairness comes from waking: only a tenant's `running_cap - running`
oldest queued jobs have a wake-up in the broker at a time ("admitted"); the others are held in
Postgres and woken when one of the tenant's jobs ends. The broker's queue is FIFO, so a tenant
that queued 50 jobs has at most `running_cap` messages ahead of another tenant's one job, which
therefore starts after at most that many of them, not after all 50.

A claim re-checks the cap under the tenant's row lock (`claim_allowed`), so a stray wake-up
(the reaper re-sends those of long-queued jobs) cannot push a tenant past it.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from persistence.models import Job
from persistence.repositories import tenants as tenants_repo

RUNNING_STATUSES = ("cancelling", "running")


def count_running(session: Session, tenant_id: uuid.UUID) -> int:
    query = select(func.count()).where(Job.tenant_id == tenant_id, Job.status.in_(RUNNING_STATUSES))
    return int(session.scalar(query) or 0)


def count_queued(session: Session, tenant_id: uuid.UUID) -> int:
    query = select(func.count()).where(Job.tenant_id == tenant_id, Job.status == "queued")
    return int(session.scalar(query) or 0)


def admitted(session: Session, tenant_id: uuid.UUID, running_cap: int) -> list[uuid.UUID]:
    """The tenant's queued jobs that may have a wake-up now: its oldest `cap - running`."""
    room = running_cap - count_running(session, tenant_id)
    if room <= 0:
        return []
    query = (
        select(Job.id)
        .where(Job.tenant_id == tenant_id, Job.status == "queued")
        .order_by(Job.created_at, Job.id)
        .limit(room)
    )
    return list(session.scalars(query))


def is_admitted(
    session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID, running_cap: int
) -> bool:
    """Whether the (just created) queued job is among the tenant's admitted ones."""
    return job_id in admitted(session, tenant_id, running_cap)


def claim_allowed(session: Session, job_id: uuid.UUID, running_cap: int) -> bool:
    """Whether a worker may start queued job `job_id` now: its tenant runs fewer than the cap.
    Takes the tenant's row lock (until commit), so two claims cannot both pass at cap - 1."""
    row = session.execute(select(Job.tenant_id, Job.status).where(Job.id == job_id)).first()
    if row is None or row.status != "queued":
        return True  # not a start of a queued job: the claim itself decides
    tenants_repo.lock_tenant(session, row.tenant_id)
    return count_running(session, row.tenant_id) < running_cap


def tenant_of(session: Session, job_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalar(select(Job.tenant_id).where(Job.id == job_id))
