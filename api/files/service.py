"""Seed file uploads: streamed to a temp file with a byte limit, validated line by line, stored."""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePath

from fastapi import Request
from python_multipart import FormParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import File
from sqlalchemy.orm import Session

from api.errors import InvalidRequest, NotFound, PayloadTooLarge
from api.files.schemas import FileRead
from clo.seed import validate_jsonl_lines
from persistence.artifact_store import ArtifactStore, make_key
from persistence.models import Tenant, UploadedFile
from persistence.repositories import files as files_repo

logger = logging.getLogger(__name__)


@dataclass
class ReceivedUpload:
    path: Path
    filename: str
    size: int


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"upload is larger than the {limit} byte limit; split the data or ask for a higher "
        "limit (CLO_MAX_UPLOAD_BYTES)",
        code="upload_too_large",
        param="file",
    )


async def receive_upload(request: Request, limit: int, workdir: Path) -> ReceivedUpload:
    """Stream the body (raw JSONL or multipart field `file`) to disk, stopping past `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)  # refuse before reading a byte
    content_type = request.headers.get("content-type", "application/jsonl")
    target = workdir / "upload.jsonl"
    size = 0
    if content_type.startswith("multipart/form-data"):
        parts: list[File] = []
        parser = FormParser(
            "multipart/form-data",
            on_field=None,
            on_file=parts.append,
            boundary=_boundary(content_type),
            config={"UPLOAD_DIR": str(workdir), "MAX_MEMORY_FILE_SIZE": 1024 * 1024},
        )
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise InvalidRequest(
                    f"malformed multipart body: {exc}", code="bad_multipart", param="file"
                ) from None
        parser.finalize()
        upload = next((p for p in parts if p.field_name == b"file"), None)
        if upload is None:
            raise InvalidRequest(
                "multipart upload needs a part named 'file'", code="missing_file", param="file"
            )
        upload.file_object.seek(0)
        with open(target, "wb") as out:
            shutil.copyfileobj(upload.file_object, out)
        upload.close()
        filename = (upload.file_name or b"upload.jsonl").decode("utf-8", "replace")
        size = target.stat().st_size
    else:
        with open(target, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                out.write(chunk)
        filename = request.query_params.get("filename") or "upload.jsonl"
    # The name is kept as a label only: it never becomes a path.
    label = "".join(ch for ch in PurePath(filename).name if ch.isprintable())[:255]
    return ReceivedUpload(path=target, filename=label or "upload.jsonl", size=size)


def _boundary(content_type: str) -> str:
    for piece in content_type.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"')
    raise InvalidRequest("multipart body without a boundary", code="bad_multipart", param="file")


def store_upload(
    session: Session, tenant: Tenant, upload: ReceivedUpload, store: ArtifactStore
) -> UploadedFile:
    """Validate every line, then store the file and its row."""
    with open(upload.path, "rb") as handle:
        report = validate_jsonl_lines(handle)
    if report.error_count:
        shown = "; ".join(str(e) for e in report.errors[:10])
        more = f" (and {report.error_count - 10} more)" if report.error_count > 10 else ""
        raise InvalidRequest(
            f"{report.error_count} invalid line(s): {shown}{more}",
            code="invalid_jsonl",
            param="file",
            details=[
                {"line": e.line, "field": e.field, "message": e.message} for e in report.errors
            ],
        )
    if report.count == 0:
        raise InvalidRequest(
            "the file has no examples; send one JSON object per line with prompt and response",
            code="empty_file",
            param="file",
        )
    file_id = uuid.uuid4()
    key = make_key("uploads", str(tenant.id), f"{file_id}.jsonl")
    stored = store.write_file(key, upload.path)
    row = files_repo.create_file(
        session,
        file_id=file_id,
        tenant_id=tenant.id,
        filename=upload.filename,
        size=stored.size,
        sha256=stored.sha256,
        n_examples=report.count,
        key=stored.key,
    )
    logger.info("file uploaded: %s examples, %s bytes", report.count, stored.size)
    return row


def get_file(session: Session, tenant: Tenant, file_id: uuid.UUID) -> UploadedFile:
    """The tenant's file or 404 (another tenant's file looks like a missing one)."""
    row = files_repo.get_file_for_tenant(session, tenant.id, file_id)
    if row is None:
        raise NotFound(f"file {file_id} not found", code="file_not_found")
    return row


def to_read(row: UploadedFile) -> FileRead:
    return FileRead(
        id=str(row.id),
        filename=row.filename,
        size=row.size,
        sha256=row.sha256,
        n_examples=row.n_examples,
        created_at=row.created_at,
    )


def temp_workdir(root: Path) -> tempfile.TemporaryDirectory[str]:
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix="upload-", dir=root)
