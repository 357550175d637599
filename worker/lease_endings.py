"""How a worker ends its hold on a job other than by finishing it: stopped (lease lost,
cancelled, or shutting down), released back to the queue, handed back by a dying process,
or the lease given up for the reaper. Each returns the outcome word run_job reports.
"""

from __future__ import annotations

import logging

from clo.checkpoint import CheckpointFence, step_of
from persistence.repositories import leases
from worker.checkpoint_store import CheckpointSync
from worker.lease import HeldLease
from worker.shutdown import shutdown_requested

logger = logging.getLogger(__name__)


def stopped(held: HeldLease, fence: CheckpointFence, sync: CheckpointSync | None) -> str:
    if held.lost.is_set():
        logger.warning("job %s: lease lost; leaving the job to its new holder", held.lease.job_id)
        return "lease_lost"
    if not held.cancel_requested.is_set() and shutdown_requested():
        return _release(held, fence, sync)
    if not held.write(
        leases.finish_job, "cancelled", message="cancelled on request; finished artifacts kept"
    ):
        return "lease_lost"
    logger.info("job %s cancelled", held.lease.job_id)
    return "cancelled"


def _release(held: HeldLease, fence: CheckpointFence, sync: CheckpointSync | None) -> str:
    """Worker shutting down: commit the stop checkpoint, hand the job back (attempt refunded)
    and wake another worker."""
    from worker.enqueue import enqueue_job

    # The stop checkpoint is the newest: the next holder resumes from it (on another host
    # only once it is in the store; else the last committed one stays the resume point).
    if fence.saved is not None and (sync is None or sync.push(fence.saved)):
        step = step_of(fence.saved)
        if not held.write(leases.record_checkpoint, str(fence.saved.parent), step):
            return "lease_lost"
        if sync is not None:
            sync.prune(fence.saved)
    reason = "worker shutting down; checkpointed, back in the queue"
    if not held.write(leases.release_job, reason):
        return "lease_lost"
    enqueue_job(held.lease.job_id)
    logger.info("job %s released: %s", held.lease.job_id, reason)
    return "released"


def hand_back(held: HeldLease, reason: str) -> str:
    """The process is going away: release the job (attempt refunded; the reaper re-sends its
    wake-up, as the broker may be what is gone), or give the lease up when a cancel is
    pending (release refuses then, and the reaper ends the job cancelled)."""
    held.handed_back = True
    held.stop_heartbeat()
    try:
        if held.write(leases.release_job, reason):
            logger.warning("job %s released: %s", held.lease.job_id, reason)
            return "released"
    except Exception:  # noqa: BLE001 - the lease then simply expires
        logger.exception("job %s: could not release the job; its lease expires", held.lease.job_id)
        return "abandoned"
    return abandon(held, reason)


def abandon(held: HeldLease, reason: str) -> str:
    """Give the lease up at once rather than letting it run out; the reaper takes it on."""
    held.stop_heartbeat()  # a later beat would renew what we give up
    try:
        if not held.write(leases.abandon_lease, reason):
            return "lease_lost"
    except Exception:  # noqa: BLE001 - the lease then simply expires
        logger.exception("job %s: could not give up the lease; it will expire", held.lease.job_id)
        return "abandoned"
    logger.warning("job %s: lease given up (%s); the reaper requeues it", held.lease.job_id, reason)
    return "abandoned"
