"""Per-step training metrics and the curves built from them."""

from __future__ import annotations

import math
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from persistence.models import JobMetric


def record_metrics(session: Session, job_id: uuid.UUID, step: int, values: dict[str, Any]) -> None:
    """Store the values logged at `step`; a step redone after a resume overwrites the old row."""
    clean = {k: v for k, v in values.items() if _is_number(v)}
    row = session.scalars(
        select(JobMetric).where(JobMetric.job_id == job_id, JobMetric.step == step)
    ).one_or_none()
    if row is None:
        session.add(JobMetric(job_id=job_id, step=step, values=clean))
    else:
        row.values = clean
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


def _is_number(value: Any) -> bool:
    # JSON has no NaN/inf; drop them rather than fail the worker's write.
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
