"""Seed files: upload, list, look up, delete (OpenAI's /v1/files shapes, see docs/OPENAI.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentTenant, SessionDep, SettingsDep, StoreDep, parse_uuid
from api.errors import COMMON_ERRORS, ErrorEnvelope
from api.files import service
from api.files.schemas import FileDeleted, FileList, FileRead

router = APIRouter(prefix="/v1/files", tags=["files"], responses=COMMON_ERRORS)


@router.post(
    "",
    status_code=201,
    response_model=FileRead,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/jsonl": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            }
        }
    },
)
async def upload_file(
    request: Request,
    session: SessionDep,
    tenant: CurrentTenant,
    settings: SettingsDep,
    store: StoreDep,
) -> FileRead:
    """Upload a JSONL seed set (raw body or multipart `file`); every line is validated.

    `purpose` (multipart field or query parameter), when sent, must be `fine-tune`.
    """
    with service.temp_workdir(Path(settings.data_dir) / "tmp") as workdir:
        upload = await service.receive_upload(request, settings.max_upload_bytes, Path(workdir))
        row = await run_in_threadpool(service.store_upload, session, tenant, upload, store)
    return service.to_read(row)


@router.get("/{file_id}", response_model=FileRead)
def get_file(file_id: str, session: SessionDep, tenant: CurrentTenant) -> FileRead:
    return service.to_read(service.get_file(session, tenant, parse_uuid(file_id, "file")))


@router.get("", response_model=FileList)
def list_files(
    session: SessionDep,
    tenant: CurrentTenant,
    after: Annotated[
        str | None, Query(max_length=64, description="Last id of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    order: Annotated[Literal["asc", "desc"], Query(description="By created_at.")] = "desc",
    purpose: Annotated[str | None, Query(max_length=64)] = None,
) -> FileList:
    """Newest first by default; pass `last_id` as `after` until has_more is false."""
    return service.list_files(
        session, tenant, limit=limit, after=after, newest_first=order == "desc", purpose=purpose
    )


@router.delete(
    "/{file_id}",
    response_model=FileDeleted,
    responses={409: {"model": ErrorEnvelope, "description": "A queued or running job uses it"}},
)
def delete_file(
    file_id: str, session: SessionDep, tenant: CurrentTenant, store: StoreDep
) -> FileDeleted:
    """Delete the file and its stored bytes; 409 `file_in_use` while an active job needs it."""
    return service.delete_file(session, tenant, parse_uuid(file_id, "file"), store)
