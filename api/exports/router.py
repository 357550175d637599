"""POST/GET /v1/jobs/{id}/exports: re-export a succeeded job on a worker (plain LoRA, merged)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import CurrentJob, SessionDep
from api.errors import COMMON_ERRORS, ErrorEnvelope
from api.exports import service
from api.exports.schemas import ExportCreate, ExportList, ExportRead
from api.exports.wakeup import ExportSend, default_export_send

router = APIRouter(prefix="/v1/jobs", tags=["exports"], responses=COMMON_ERRORS)

_CREATE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"model": ExportRead, "description": "The same options again: the export as it is"},
    409: {
        "model": ErrorEnvelope,
        "description": "The job has not succeeded (job_not_succeeded), or its result was "
        "deleted (export_source_missing)",
    },
}


def _send(request: Request) -> ExportSend:
    """The app's export sender (tests set app.state.export_send), else the broker's."""
    send = getattr(request.app.state, "export_send", None)
    if send is None:
        send = default_export_send(request.app.state.settings)
        request.app.state.export_send = send
    return send  # type: ignore[no-any-return]


@router.post(
    "/{job_id}/exports", status_code=202, response_model=ExportRead, responses=_CREATE_RESPONSES
)
def create_export(
    body: ExportCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    job: CurrentJob,
) -> ExportRead:
    """Export the job's result on a worker; poll the export until succeeded, then download its
    artifact. The same options again return the same export (200), run again if it failed."""
    row, queued = service.create_export(
        session, job, body, send=_send(request), factory=request.app.state.session_factory
    )
    if not queued:
        response.status_code = 200
    response.headers["Location"] = f"/v1/jobs/{job.id}/exports/{row.id}"
    return service.export_read(session, row)


@router.get("/{job_id}/exports", response_model=ExportList)
def list_exports(session: SessionDep, job: CurrentJob) -> ExportList:
    return service.list_exports(session, job)


@router.get("/{job_id}/exports/{export_id}", response_model=ExportRead)
def get_export(export_id: str, session: SessionDep, job: CurrentJob) -> ExportRead:
    return service.get_export(session, job, export_id)
