"""Artifacts of a job: rows from the database, bytes from the artifact store."""

from __future__ import annotations

import base64
import logging
import re
import uuid
from datetime import datetime

from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session
from starlette.responses import MalformedRangeHeader
from starlette.responses import RangeNotSatisfiable as RangeOutside

from api.artifacts.store_download import store_download
from api.errors import BadRequest, NotFound, RangeNotSatisfiable
from api.jobs.schemas import ArtifactRead
from persistence.artifact_store import BlobStore, UnsafeKeyError
from persistence.models import Artifact, Job
from persistence.repositories import artifacts as artifacts_repo

logger = logging.getLogger(__name__)

# Artifact names are plain file names; anything else cannot name an artifact.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class ArtifactFileResponse(FileResponse):
    """A FileResponse whose Range refusals are JSON error envelopes, not Starlette's plain
    text: the parse runs before anything is sent, so raising hands them to the handlers."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader as exc:
            raise BadRequest(
                f"{exc.content.rstrip('.')}; send Range: bytes=<start>-<end>",
                code="invalid_range",
                param="Range",
            ) from None
        except RangeOutside as exc:
            raise RangeNotSatisfiable(
                f"Range starts past the end of the file ({exc.max_size} bytes)",
                param="Range",
                headers={"Content-Range": f"bytes */{exc.max_size}"},
            ) from None


def list_artifacts(session: Session, job: Job) -> list[ArtifactRead]:
    return [row_read(a) for a in artifacts_repo.list_artifacts(session, job.id)]


def row_read(a: Artifact) -> ArtifactRead:
    return artifact_read(a.job_id, a.name, a.kind, a.size, a.sha256, a.created_at)


def artifact_read(
    job_id: uuid.UUID, name: str, kind: str, size: int, sha256: str, created_at: datetime
) -> ArtifactRead:
    """The API view of one artifact row (ORM row or the job read's joined columns)."""
    return ArtifactRead(
        name=name,
        kind=kind,
        size=size,
        sha256=sha256,
        created_at=created_at,
        download_url=f"/v1/jobs/{job_id}/artifacts/{name}",
    )


def find_artifact(session: Session, job_id: uuid.UUID, name: str) -> Artifact:
    """The job's artifact row of that name (looked up in the database, never on disk)."""
    row = artifacts_repo.get_artifact(session, job_id, name) if _NAME.match(name) else None
    if row is None:
        raise NotFound(f"job {job_id} has no artifact {name!r}", code="artifact_not_found")
    return row


def download(
    session: Session, job: Job, name: str, store: BlobStore, *, head: bool = False
) -> Response:
    """Serve the stored key the job's artifact row of that name maps to; `head`: its headers
    only (FileResponse answers a HEAD itself; an object is not read, nor redirected to)."""
    row = find_artifact(session, job.id, name)
    try:
        path = store.local_path(row.key)
    except UnsafeKeyError:
        logger.error("artifact row with unsafe key", extra={"job_id": str(job.id)})
        raise NotFound(f"artifact {name!r} is unavailable", code="artifact_missing") from None
    digest_b64 = base64.b64encode(bytes.fromhex(row.sha256)).decode()
    headers = {
        "ETag": f'"{row.sha256}"',
        "X-Checksum-Sha256": row.sha256,
        "Repr-Digest": f"sha-256=:{digest_b64}:",
    }
    if path is None:  # an object store (CLO_STORAGE_URL=s3://...): streamed or redirected
        parse_range = ArtifactFileResponse._parse_range_header
        return store_download(store, row.key, row.name, headers, parse_range, head=head)
    if not path.is_file():
        logger.error("artifact file missing from store", extra={"job_id": str(job.id)})
        raise NotFound(f"artifact {name!r} is unavailable", code="artifact_missing")
    return ArtifactFileResponse(
        path, filename=row.name, media_type="application/octet-stream", headers=headers
    )
