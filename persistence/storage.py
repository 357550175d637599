"""The artifact store a deployment's settings name: the local folder or an object store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from persistence.artifact_store import ArtifactStore, BlobStore
from persistence.storage_url import parse_storage_url

if TYPE_CHECKING:
    from persistence.settings import Settings


def open_store(settings: Settings) -> BlobStore:
    """The store every API and worker process of this deployment reads and writes.

    Unset `storage_url`: the local `artifact_dir` (one host, or a shared mount).
    `s3://bucket/prefix`: S3 or a compatible store at `storage_endpoint_url`, which every
    host reaches, so no disk is shared between the API and the workers.
    """
    if settings.storage_url is None:
        return ArtifactStore(settings.artifact_root)
    location = parse_storage_url(settings.storage_url)
    if location.scheme == "file":
        assert location.folder is not None
        return ArtifactStore(location.folder)
    from persistence.storage_object import s3_store  # s3fs loads only where it is used

    return s3_store(
        location.root,
        endpoint_url=settings.storage_endpoint_url,
        region=settings.storage_region,
        download_redirect_seconds=(
            settings.presigned_url_seconds if settings.download_mode == "redirect" else None
        ),
    )
