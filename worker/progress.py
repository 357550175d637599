"""Turns the pipeline's progress callbacks into throttled, fenced Postgres writes."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from persistence.repositories import leases
from worker.lease import HeldLease

logger = logging.getLogger(__name__)

# Keys of a progress event that are not metrics.
_CONTROL_KEYS = {"stage", "step", "total_steps", "event", "message", "path", "epoch_step"}


def _metric_values(event: dict[str, Any]) -> dict[str, float]:
    values: dict[str, float] = {}
    for key, value in event.items():
        if key in _CONTROL_KEYS or isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            values[key] = float(value)
    return values


class ProgressRecorder:
    """The `progress` hook for one job: stage changes and events now, progress at most 1/s.

    Training metrics of every logged step are kept and written in batches with the
    throttled progress write, so none is lost and Postgres sees ~1 write per second.
    """

    def __init__(self, held: HeldLease, interval_seconds: float = 1.0) -> None:
        self.held = held
        self.interval = interval_seconds
        self.stage: str | None = None
        self._stage_started = 0.0
        self._stage_first_step: int | None = None
        self._last_write: float | None = None
        self._pending_metrics: list[tuple[int, dict[str, Any]]] = []
        self._pending_progress: dict[str, Any] | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        stage = event.get("stage")
        if stage and stage != self.stage:
            self.flush()
            self.stage = stage
            self._stage_started = time.monotonic()
            self._stage_first_step = None
            self.held.write(leases.set_stage, stage)
            self._last_write = None  # show a new stage's first step at once
        kind = event.get("event")
        if kind == "checkpoint" and event.get("path") is not None:
            self.held.write(leases.record_checkpoint, str(event["path"]), int(event["step"]))
        if kind and kind != "stage_started":
            data = {k: v for k, v in event.items() if k not in ("event", "message")}
            self.held.write(leases.add_event, str(kind), str(event.get("message", "")), data)
        step, total = event.get("step"), event.get("total_steps")
        if isinstance(step, int):
            if self.stage == "training":
                metrics = _metric_values(event)
                if metrics:
                    self._pending_metrics.append((step, metrics))
            self._pending_progress = self._progress_fields(step, total)
            finished = isinstance(total, int) and step >= total
            due = self._last_write is None or time.monotonic() - self._last_write >= self.interval
            if finished or due:
                self.flush()

    def _progress_fields(self, step: int, total: Any) -> dict[str, Any]:
        if self._stage_first_step is None:
            self._stage_first_step = step
            self._stage_started = time.monotonic()
        percent = eta = None
        if isinstance(total, int) and total > 0:
            percent = round(100.0 * min(step, total) / total, 2)
            done = step - self._stage_first_step
            elapsed = time.monotonic() - self._stage_started
            if done > 0 and elapsed > 0:
                eta = round(elapsed / done * max(total - step, 0), 1)
        return {
            "step": step,
            "total_steps": total if isinstance(total, int) else None,
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
