"""Object storage behind the artifact-store interface, through fsspec (s3fs for S3, MinIO, R2).

A write goes to a unique staging key first and is published by a server-side copy to the
final key, so a reader never sees a half-written object: an interrupted or failed write leaves
at most a staging object, which no read, listing or download looks at (`sweep_staging`
removes old ones; a bucket lifecycle rule on `<prefix>/.staging/` does the same).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast

from persistence.artifact_store import (
    BlobStore,
    StorageUnavailableError,
    StoredObject,
    check_key,
    copy_counted,
)

logger = logging.getLogger(__name__)

STAGING = ".staging"
# One ranged GET per block when streaming a download: big enough that a 1 GB file is ~128
# requests, small enough that a Range request for a few bytes does not fetch megabytes.
READ_BLOCK = 8 * 1024 * 1024


class ObjectStore(BlobStore):
    """Objects under `root` ('bucket/prefix') of an fsspec file system."""

    def __init__(
        self,
        fs: Any,
        root: str,
        *,
        download_redirect_seconds: int | None = None,
        transient_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.fs = fs
        self.root = root.strip("/")
        self.download_redirect_seconds = download_redirect_seconds
        # The file system's own "could not reach the store" errors (botocore's for s3fs),
        # raised as StorageUnavailableError so callers need not know the backend.
        self.transient_errors = transient_errors

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except self.transient_errors as exc:
            raise StorageUnavailableError(f"object store unreachable: {exc}") from exc

    def __repr__(self) -> str:
        return f"ObjectStore({self.fs.protocol!r}, {self.root!r})"

    def _path(self, key: str) -> str:
        check_key(key)
        return f"{self.root}/{key}"

    def exists(self, key: str) -> bool:
        # isfile, not exists: on S3 a key prefix with objects under it "exists" as a folder.
        path = self._path(key)
        with self._reachable():
            return bool(self.fs.isfile(path))

    def size(self, key: str) -> int:
        path = self._path(key)
        with self._reachable():
            info = self.fs.info(path)
        if info.get("type") != "file":
            raise FileNotFoundError(key)
        return int(info["size"])

    def write_stream(
        self, key: str, chunks: Iterable[bytes], max_bytes: int | None = None
    ) -> StoredObject:
        final = self._path(key)
        staging = f"{self.root}/{STAGING}/{uuid.uuid4().hex}-{key.rsplit('/', 1)[-1]}"
        try:
            with self._reachable():
                with self.fs.open(staging, "wb") as out:
                    counted = copy_counted(chunks, out, max_bytes)
                # Publish: one server-side operation, so the final key appears whole.
                self.fs.copy(staging, final)
        except StorageUnavailableError:
            raise  # a delete would time out the same way; sweep_staging takes the leftover
        except BaseException:
            self._remove(staging)
            raise
        self._remove(staging)
        return StoredObject(key=key, size=counted.size, sha256=counted.sha256)

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        with self._reachable():
            handle = self.fs.open(path, "rb", block_size=READ_BLOCK)
        return cast(BinaryIO, handle)

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._path(key)
        size = self.size(key)
        last = size - 1 if end is None else min(end, size - 1)
        position = start
        while position <= last:
            stop = min(position + READ_BLOCK, last + 1)
            with self._reachable():
                chunk = cast(bytes, self.fs.cat_file(path, start=position, end=stop))
            if not chunk:
                break
            position += len(chunk)
            yield chunk

    def list_keys(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix else self.root
        try:
            with self._reachable():
                found = cast(list[str], self.fs.find(base))
        except FileNotFoundError:
            return []
        head = f"{self.root}/"
        keys = (path[len(head) :] for path in found if path.startswith(f"{base}/"))
        return sorted(k for k in keys if not k.startswith(f"{STAGING}/"))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            with self._reachable():
                self.fs.rm_file(path)
        except FileNotFoundError:
            pass

    def presigned_url(self, key: str, seconds: int, filename: str) -> str:
        """A GET URL signed with this host's credentials; the store checks it, not the API."""
        disposition = f'attachment; filename="{filename}"'
        url = self.fs.sign(
            self._path(key), expiration=seconds, ResponseContentDisposition=disposition
        )
        return cast(str, url)

    def staging_keys(self) -> list[str]:
        """Staging objects left by interrupted writes (never read, listed or served)."""
        try:
            found = cast(list[str], self.fs.find(f"{self.root}/{STAGING}"))
        except FileNotFoundError:
            return []
        return sorted(path[len(self.root) + 1 :] for path in found)

    def sweep_staging(self, older_than: timedelta) -> int:
        """Delete staging objects older than `older_than` (abandoned writes); their count."""
        cutoff = datetime.now(UTC) - older_than
        removed = 0
        for key in self.staging_keys():
            path = f"{self.root}/{key}"
            modified = self.fs.info(path).get("LastModified")
            if isinstance(modified, datetime) and modified < cutoff:
                self._remove(path)
                removed += 1
        return removed

    def _remove(self, path: str) -> None:
        """Delete a staging object, best effort: one left over is never read."""
        try:
            with self._reachable():
                self.fs.rm_file(path)
        except FileNotFoundError:
            pass
        except OSError:
            logger.warning("could not remove %s", path, exc_info=True)


def s3_store(
    root: str,
    *,
    endpoint_url: str | None,
    region: str | None,
    download_redirect_seconds: int | None = None,
) -> ObjectStore:
    """An ObjectStore on S3 or an S3-compatible endpoint; credentials come from the standard
    AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE)."""
    import fsspec

    client_kwargs: dict[str, Any] = {}
    if region:
        client_kwargs["region_name"] = region
    config_kwargs: dict[str, Any] = {"signature_version": "s3v4"}
    if endpoint_url:
        # MinIO and most self-hosted stores serve buckets as paths, not as sub-domains.
        config_kwargs["s3"] = {"addressing_style": "path"}
    from botocore.exceptions import BotoCoreError

    # AWS's "standard" retry mode with 3 attempts: a dead endpoint is reported in about
    # 2 s (botocore's legacy default took ~10 s) while a blip is still ridden out.
    config_kwargs["retries"] = {"mode": "standard", "max_attempts": 3}
    fs = fsspec.filesystem(
        "s3",
        endpoint_url=endpoint_url,
        client_kwargs=client_kwargs,
        config_kwargs=config_kwargs,
        # Other hosts write the same bucket: a cached listing would hide their objects.
        use_listings_cache=False,
    )
    return ObjectStore(
        fs,
        root,
        download_redirect_seconds=download_redirect_seconds,
        transient_errors=(BotoCoreError,),
    )
