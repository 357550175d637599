"""GET /v1/jobs/{id}/checkpoints: every checkpoint the job committed, newest first; the one
kept as an artifact (a failed or cancelled job's last) downloads with the artifact routes."""

from __future__ import annotations

import re
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.artifacts.service import row_read
from api.deps import CurrentJob, SessionDep
from api.errors import COMMON_ERRORS
from api.jobs.schemas import ArtifactRead
from persistence.models import Job
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo
from persistence.repositories import metrics as metrics_repo

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"], responses=COMMON_ERRORS)

_KEPT = re.compile(r"^checkpoint-step-(\d+)\.tar$")  # worker.checkpoint_artifacts' names
_MAX_LISTED = 1000


class CheckpointRead(BaseModel):
    step: int = Field(description="Optimizer step the checkpoint was taken after.")
    stage: str | None = None
    created_at: datetime
    train_loss: float | None = Field(None, description="The logged training loss at that step.")
    artifact: ArtifactRead | None = Field(
        None,
        description="Set when this checkpoint is kept as an artifact (the last one a failed or "
        "cancelled job committed): trainable.safetensors, optimizer.pt, state.json in a tar.",
    )


class CheckpointList(BaseModel):
    data: list[CheckpointRead] = Field(description="Newest first.")


@router.get("/{job_id}/checkpoints", response_model=CheckpointList)
def list_checkpoints(session: SessionDep, job: CurrentJob) -> CheckpointList:
    """The checkpoints the job committed. Only the last committed one of a job that failed or
    was cancelled is downloadable (`artifact`); a succeeded job's are superseded by its
    adapter, and earlier ones are pruned from the scratch folder as training goes."""
    return _checkpoints(session, job)


def _checkpoints(session: Session, job: Job) -> CheckpointList:
    kept = {
        int(match.group(1)): a
        for a in artifacts_repo.list_artifacts(session, job.id)
        if a.kind == "checkpoint" and (match := _KEPT.match(a.name))
    }
    loss = {
        point["step"]: point["value"]
        for point in metrics_repo.metric_curves(session, job.id).get("loss", [])
    }
    events = events_repo.list_events_newest_first(
        session, job.id, limit=_MAX_LISTED, types=("checkpoint",)
    )
    data: list[CheckpointRead] = []
    seen: set[int] = set()
    for event in events:
        step = int((event.data or {}).get("step", -1))
        if step < 0 or step in seen:  # a resumed attempt may commit the same step again
            continue
        seen.add(step)
        artifact = kept.get(step)
        value = loss.get(step)
        data.append(
            CheckpointRead(
                step=step,
                stage=(event.data or {}).get("stage"),
                created_at=event.created_at,
                train_loss=float(value) if isinstance(value, int | float) else None,
                artifact=row_read(artifact) if artifact is not None else None,
            )
        )
    return CheckpointList(data=data)
