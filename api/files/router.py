"""Seed file upload and lookup."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentTenant, SessionDep, SettingsDep, StoreDep, parse_uuid
from api.errors import COMMON_ERRORS
from api.files import service
from api.files.schemas import FileRead

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
    """Upload a JSONL seed set (raw body or multipart `file`); every line is validated."""
    with service.temp_workdir(Path(settings.data_dir) / "tmp") as workdir:
        upload = await service.receive_upload(request, settings.max_upload_bytes, Path(workdir))
        row = await run_in_threadpool(service.store_upload, session, tenant, upload, store)
    return service.to_read(row)


@router.get("/{file_id}", response_model=FileRead)
def get_file(file_id: str, session: SessionDep, tenant: CurrentTenant) -> FileRead:
    return service.to_read(service.get_file(session, tenant, parse_uuid(file_id, "file")))
