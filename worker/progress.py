"""Turns the pipeline's typed events (clo.events) into throttled, fenced Postgres writes."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from clo.checkpoint import OWNER_PREFIX, checkpoint_at, discard_other_owners
from clo.errors import Stopped
from clo.events import CheckpointSaved, Event, StepDone
from persistence.repositories import leases
from worker.checkpoint_store import CheckpointSync
from worker.lease import HeldLease
from worker.metrics import StageClock

logger = logging.getLogger(__name__)


class ProgressRecorder:
    """The `progress` hook for one job: stage changes and events now, progress at most 1/s.

    Training metrics of every logged step are kept and written in batches with the
    throttled progress write, so none is lost and Postgres sees ~1 write per second.
    """

    def __init__(
        self, held: HeldLease, interval_seconds: float = 1.0, sync: CheckpointSync | None = None
    ) -> None:
        self.held = held
        self.sync = sync  # set when checkpoints must reach the object store (other hosts)
        self.interval = interval_seconds
        self.stage: str | None = None
        self.clock = StageClock()  # stage durations for the worker's metrics
        self._stage_started = 0.0
        self._stage_first_step: int | None = None
        self._last_write: float | None = None
        self._pending_metrics: list[tuple[int, dict[str, Any]]] = []
        self._pending_progress: dict[str, Any] | None = None

    def __call__(self, event: Event) -> None:
        # After every step: a process that slept past its lease (SIGSTOP) stops here, before
        # it exports or stores anything the new holder could mistake for its own.
        if not self.held.still_held():
            raise Stopped("lease lost")
        if event.stage != self.stage:
            self.flush()
            self.clock.enter(event.stage)
            self.stage = event.stage
            self._stage_started = time.monotonic()
            self._stage_first_step = None
            self.held.write(leases.set_stage, event.stage)
            self._last_write = None  # show a new stage's first step at once
        if isinstance(event, CheckpointSaved):
            checkpoint = checkpoint_at(Path(event.path), event.step)
            if self.sync is not None and not self.sync.push(checkpoint):
                return  # not in the store: the previous commit stays the resume point
            # The commit point: a resumed attempt takes only the checkpoint recorded here.
            committed = self.held.write(leases.record_checkpoint, event.path, event.step)
            folder = Path(event.path)
            if committed and folder.name.startswith(OWNER_PREFIX):
                discard_other_owners(folder.parent, self.held.lease.token.hex)
            if committed and self.sync is not None:
                self.sync.prune(checkpoint)
            # Clients see the step, not the worker's filesystem.
            self.held.write(
                leases.add_event,
                "checkpoint",
                f"checkpoint at step {event.step}",
                {"stage": event.stage, "step": event.step},
            )
        elif isinstance(event, StepDone):
            if self.stage == "training" and event.metrics:
                self._pending_metrics.append((event.step, dict(event.metrics)))
            self._pending_progress = self._progress_fields(event.step, event.total_steps)
            total = event.total_steps
            finished = total is not None and event.step >= total
            due = self._last_write is None or time.monotonic() - self._last_write >= self.interval
            if finished or due:
                self.flush()

    def _progress_fields(self, step: int, total: int | None) -> dict[str, Any]:
        if self._stage_first_step is None:
            self._stage_first_step = step
            self._stage_started = time.monotonic()
        percent = eta = None
        if total is not None and total > 0:
            percent = round(100.0 * min(step, total) / total, 2)
            done = step - self._stage_first_step
            elapsed = time.monotonic() - self._stage_started
            if done > 0 and elapsed > 0:
                eta = round(elapsed / done * max(total - step, 0), 1)
        return {
            "step": step,
            "total_steps": total,
            "percent": percent,
            "eta_seconds": eta,
        }

    def flush(self) -> None:
        """Write what is pending now (stage change, job end)."""
        if self._pending_metrics:
            rows, self._pending_metrics = self._pending_metrics, []
            self.held.write(leases.record_metrics, rows)
        if self._pending_progress is not None:
            fields, self._pending_progress = self._pending_progress, None
            self.held.write(leases.record_progress, **fields)
        self._last_write = time.monotonic()
