"""Artifact listing and download (streamed from the store, with sha256 and Range support)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from api.artifacts import service
from api.artifacts.links import LinkSigner
from api.deps import CurrentJob, SessionDep, StoreDep, bearer_secret, invalid_key
from api.errors import COMMON_ERRORS, ErrorEnvelope, Gone, NotFound
from api.jobs.schemas import ArtifactRead
from persistence.models import Job
from persistence.repositories import tenants as tenants_repo

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"], responses=COMMON_ERRORS)
downloads_router = APIRouter(prefix="/v1/downloads", tags=["artifacts"], responses=COMMON_ERRORS)

_FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/octet-stream": {}}},
    206: {"description": "The requested byte range"},
    307: {"description": "CLO_DOWNLOAD_MODE=redirect: a presigned URL of the object store"},
    416: {"model": ErrorEnvelope, "description": "Range not satisfiable"},
}
_LINK_GONE = {"model": ErrorEnvelope, "description": "The link expired, or its key was revoked"}


class DownloadLink(BaseModel):
    url: str = Field(description="GET it without an API key until expires_at.")
    expires_at: datetime


@router.get("/{job_id}/artifacts", response_model=list[ArtifactRead])
def list_artifacts(session: SessionDep, job: CurrentJob) -> list[ArtifactRead]:
    return service.list_artifacts(session, job)


@router.get("/{job_id}/artifacts/{name}", response_class=FileResponse, responses=_FILE_RESPONSES)
def download_artifact(name: str, session: SessionDep, job: CurrentJob, store: StoreDep) -> Response:
    """The file, streamed; X-Checksum-Sha256 and ETag carry its sha256; Range gives 206."""
    return service.download(session, job, name, store)


# HEAD: the same headers as GET (Content-Length, ETag / X-Checksum-Sha256 / Repr-Digest),
# no body, so a client can check size and checksum before (or instead of) downloading. Out of
# the schema: the GET documents the headers, and a body-less operation only confuses clients.
@router.head("/{job_id}/artifacts/{name}", include_in_schema=False)
def head_artifact(name: str, session: SessionDep, job: CurrentJob, store: StoreDep) -> Response:
    return service.download(session, job, name, store, head=True)


@router.post("/{job_id}/artifacts/{name}/link", response_model=DownloadLink, status_code=201)
def create_download_link(
    name: str, request: Request, session: SessionDep, job: CurrentJob
) -> DownloadLink:
    """A signed link to the artifact that needs no API key and expires (browsers, curl);
    revoking the key that asked for it invalidates it."""
    row = service.find_artifact(session, job.id, name)
    key_id = tenants_repo.active_key_id(session, bearer_secret(request))
    if key_id is None:  # revoked between the tenant check and now
        raise invalid_key()
    signer: LinkSigner = request.app.state.link_signer
    token, expires_at = signer.issue(job.id, row.name, key_id)
    return DownloadLink(url=f"/v1/downloads/{token}", expires_at=expires_at)


@downloads_router.get(
    "/{token}",
    response_class=FileResponse,
    responses={**_FILE_RESPONSES, 410: _LINK_GONE},
)
@downloads_router.head("/{token}", include_in_schema=False)
def download_by_link(
    token: str, request: Request, session: SessionDep, store: StoreDep
) -> Response:
    """The artifact a download link names, as GET /v1/jobs/{id}/artifacts/{name} serves it."""
    signer: LinkSigner = request.app.state.link_signer
    job_id, name, key_id = signer.read(token)
    job = session.get(Job, job_id)
    if job is None:  # deleted since the link was issued
        raise NotFound("no such download link", code="download_link_not_found")
    key_tenant = tenants_repo.active_key_tenant(session, key_id)
    if key_tenant is None:
        raise Gone(
            "the API key that issued this download link was revoked",
            code="download_link_revoked",
        )
    if key_tenant != job.tenant_id:  # cannot be issued so; refuse rather than trust it
        raise NotFound("no such download link", code="download_link_not_found")
    request.state.job_id = str(job.id)
    return service.download(session, job, name, store, head=request.method == "HEAD")
