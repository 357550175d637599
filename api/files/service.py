"""Seed files: uploads streamed to a temp file with a byte limit, validated line by line and
stored; listing; deletion that frees the stored bytes."""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePath

from fastapi import Request
from python_multipart import FormParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field, File
from sqlalchemy.orm import Session

from api.deps import after_commit
from api.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from api.files.schemas import FILE_PURPOSE, FileDeleted, FileList, FileRead
from clo.seed import validate_jsonl_lines
from persistence.artifact_store import BlobStore, make_key
from persistence.models import Tenant, UploadedFile
from persistence.repositories import files as files_repo
from persistence.repositories import tenants as tenants_repo
from service.catalog import as_uuid

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
        fields: list[Field] = []
        parser = FormParser(
            "multipart/form-data",
            on_field=fields.append,
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
        purposes = [f.value for f in fields if f.field_name == b"purpose"]
        _check_purpose(purposes[0].decode("utf-8", "replace") if purposes and purposes[0] else None)
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
        _check_purpose(request.query_params.get("purpose"))
        filename = request.query_params.get("filename") or "upload.jsonl"
    # The name is kept as a label only: it never becomes a path.
    label = "".join(ch for ch in PurePath(filename).name if ch.isprintable())[:255]
    return ReceivedUpload(path=target, filename=label or "upload.jsonl", size=size)


def _check_purpose(purpose: str | None) -> None:
    """OpenAI clients send `purpose`; seed data for fine-tuning is the only one kept here."""
    if purpose is not None and purpose != FILE_PURPOSE:
        raise InvalidRequest(
            f"purpose {purpose[:40]!r} is not supported; this service stores seed data for "
            f"fine-tuning only: purpose {FILE_PURPOSE!r}",
            code="unsupported_purpose",
            param="purpose",
        )


def _boundary(content_type: str) -> str:
    for piece in content_type.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"')
    raise InvalidRequest("multipart body without a boundary", code="bad_multipart", param="file")


def store_upload(
    session: Session, tenant: Tenant, upload: ReceivedUpload, store: BlobStore
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


def list_files(
    session: Session,
    tenant: Tenant,
    *,
    limit: int,
    after: str | None,
    newest_first: bool,
    purpose: str | None,
) -> FileList:
    """A page of the tenant's files; `after` is the id of the last file of the previous page."""
    mark = None
    if after is not None:
        parsed = as_uuid(after)
        mark = files_repo.get_file_for_tenant(session, tenant.id, parsed) if parsed else None
        if mark is None:
            raise InvalidRequest(
                f"after {after[:64]!r} is not one of your files; pass the last id of the "
                "previous page",
                code="invalid_cursor",
                param="after",
            )
    if purpose is not None and purpose != FILE_PURPOSE:
        return FileList(data=[], has_more=False)  # nothing is stored for other purposes
    rows = files_repo.list_files_for_tenant(
        session, tenant.id, limit=limit + 1, newest_first=newest_first, after=mark
    )
    data = [to_read(row) for row in rows[:limit]]
    return FileList(
        data=data,
        has_more=len(rows) > limit,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


def delete_file(
    session: Session, tenant: Tenant, file_id: uuid.UUID, store: BlobStore
) -> FileDeleted:
    """Delete the row now and the stored bytes once that commits; 409 while a job needs it."""
    row = get_file(session, tenant, file_id)
    # The same lock job creation takes for its concurrency check: deletions of one tenant's
    # files and its job submissions are serialised.
    tenants_repo.lock_tenant(session, tenant.id)
    users = files_repo.active_jobs_using_file(session, tenant.id, file_id)
    if users:
        shown = ", ".join(str(j) for j in users[:5])
        raise Conflict(
            f"file {file_id} is the seed data of {len(users)} queued or running job(s) "
            f"({shown}); delete it once they have finished or been cancelled",
            code="file_in_use",
            param="file_id",
        )
    key = row.key
    files_repo.delete_file(session, row)
    after_commit(session, partial(store.delete, key))
    logger.info("file deleted: %s", file_id)
    return FileDeleted(id=str(file_id), deleted=True)


def to_read(row: UploadedFile) -> FileRead:
    return FileRead(
        id=str(row.id),
        bytes=row.size,
        created_at=int(row.created_at.timestamp()),
        filename=row.filename,
        size=row.size,
        sha256=row.sha256,
        n_examples=row.n_examples,
    )


def temp_workdir(root: Path) -> tempfile.TemporaryDirectory[str]:
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix="upload-", dir=root)
