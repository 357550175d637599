"""Artifact listing and download (streamed from the store, with sha256 and Range support)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.artifacts import service
from api.deps import CurrentJob, SessionDep, StoreDep
from api.errors import COMMON_ERRORS
from api.jobs.schemas import ArtifactRead

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"], responses=COMMON_ERRORS)


@router.get("/{job_id}/artifacts", response_model=list[ArtifactRead])
def list_artifacts(session: SessionDep, job: CurrentJob) -> list[ArtifactRead]:
    return service.list_artifacts(session, job)


@router.get(
    "/{job_id}/artifacts/{name}",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "The requested byte range"},
        416: {"description": "Range not satisfiable"},
    },
)
def download_artifact(
    name: str, session: SessionDep, job: CurrentJob, store: StoreDep
) -> FileResponse:
    """The file, streamed; X-Checksum-Sha256 and ETag carry its sha256; Range gives 206."""
    return service.download(session, job, name, store)
