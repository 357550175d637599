"""Per-step training metrics and the curves built from them."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from persistence.models import JobMetric


def record_metrics(
    session: Session, job_id: uuid.UUID, rows: Sequence[tuple[int, Mapping[str, Any]]]
) -> None:
    """Store the values logged at each step; a step redone after a resume replaces its old row.

    The one writer of metric rows: the worker's fenced write and the tests' builders use it.
    """
    latest = {step: _numbers(values) for step, values in rows}  # a repeated step: the last wins
    if not latest:
        return
    session.execute(
        delete(JobMetric).where(JobMetric.job_id == job_id, JobMetric.step.in_(list(latest)))
    )
    session.add_all(
        JobMetric(job_id=job_id, step=step, values=values) for step, values in latest.items()
    )
    session.flush()


def metric_curves(session: Session, job_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    """{name: [{step, value}, ...]} ordered by step."""
    rows = session.scalars(
        select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.step)
    )
    curves: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        for name, value in row.values.items():
            curves.setdefault(name, []).append({"step": row.step, "value": value})
    return curves


def _numbers(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values JSON can hold as numbers."""
    return {name: value for name, value in values.items() if _is_number(value)}


def _is_number(value: Any) -> bool:
    # JSON has no NaN/inf; drop them rather than fail the worker's write.
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
