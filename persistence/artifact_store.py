"""The artifact store: keys to bytes, with sha256 computed while writing.

`BlobStore` is the interface the API and the workers use; `ArtifactStore` is its local-folder
implementation (the embedded default) and `persistence.storage_object.ObjectStore` the
fsspec one (S3 and compatible stores). `persistence.storage.open_store(settings)` picks one.

Keys are store-relative POSIX paths that this module builds from checked parts; nothing a
client sends is ever joined onto a path without `check_key` vetting it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

logger = logging.getLogger(__name__)

_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
CHUNK = 1024 * 1024


class UnsafeKeyError(ValueError):
    """A key that could escape the store (.., absolute, odd characters)."""


class StorageUnavailableError(OSError):
    """The store did not answer (endpoint down, network): nothing is wrong with the request."""


class TooLargeError(ValueError):
    """A streamed write went past its byte limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


def make_key(*parts: str) -> str:
    """Join checked parts into a key; each part is one safe file-name component."""
    for part in parts:
        if not _SAFE_PART.match(part) or part in {".", ".."} or ".." in part:
            raise UnsafeKeyError(f"unsafe key part {part!r}")
    return "/".join(parts)


def check_key(key: str) -> list[str]:
    """The parts of `key`; refuses anything that is not a key `make_key` could build."""
    parts = key.split("/")
    make_key(*parts)
    return parts


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


def copy_counted(chunks: Iterable[bytes], out: _Writable, max_bytes: int | None) -> StoredObject:
    """Write chunks to `out`, counting and hashing them; the key is filled in by the caller."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise TooLargeError(max_bytes)
        digest.update(chunk)
        out.write(chunk)
    return StoredObject(key="", size=size, sha256=digest.hexdigest())


class BlobStore(ABC):
    """Write-once objects under safe keys; a reader only ever sees finished objects."""

    #: When set, downloads answer a redirect to a `presigned_url` living this many seconds
    #: instead of streaming the bytes through the API (object stores only).
    download_redirect_seconds: int | None = None

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int:
        """Bytes in the finished object; FileNotFoundError when there is none."""

    @abstractmethod
    def write_stream(
        self, key: str, chunks: Iterable[bytes], max_bytes: int | None = None
    ) -> StoredObject:
        """Write chunks under `key`, published only once all of them are written."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A seekable binary reader; FileNotFoundError when there is no such object."""

    @abstractmethod
    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield bytes start..end (inclusive) in chunks, never the whole object at once."""

    @abstractmethod
    def list_keys(self, prefix: str = "") -> list[str]:
        """Keys of finished objects under `prefix` (whole key parts), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error."""

    def local_path(self, key: str) -> Path | None:
        """The file holding `key` when the store is a local folder, else None."""
        check_key(key)
        return None

    def presigned_url(self, key: str, seconds: int, filename: str) -> str:
        """A URL that GETs the object without credentials for `seconds` (object stores)."""
        raise NotImplementedError(f"{type(self).__name__} cannot presign URLs")

    def write_file(self, key: str, source: Path) -> StoredObject:
        """Copy a local file into the store."""
        with open(source, "rb") as src:
            return self.write_stream(key, iter(lambda: src.read(CHUNK), b""))

    def write_bytes(self, key: str, data: bytes) -> StoredObject:
        return self.write_stream(key, [data])

    def write_dir_archive(self, key: str, source_dir: Path) -> StoredObject:
        """Store a folder (an adapter bundle) as one uncompressed tar; safetensors barely zip.

        The tar is streamed straight into the store's own staging (a partial file next to
        the key, a staging object), never built in the system temp folder first: a bundle
        takes its size once on disk, not twice.
        """
        source_dir = Path(source_dir)
        if not source_dir.is_dir():
            raise NotADirectoryError(source_dir)
        return self.write_stream(key, tar_chunks(source_dir))


def tar_chunks(source_dir: Path) -> Iterator[bytes]:
    """The regular files under `source_dir` as an uncompressed tar, in chunks of at most
    CHUNK bytes (a multi-GB model is never held in memory). Headers come from tarfile, so
    `tarfile.open` reads the result like one it wrote."""
    written = 0
    for path in sorted(source_dir.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        stat = path.stat()
        info = tarfile.TarInfo(path.relative_to(source_dir).as_posix())
        info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), stat.st_mode & 0o777
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        yield header
        with open(path, "rb") as handle:
            left = info.size
            while left > 0:
                chunk = handle.read(min(CHUNK, left))
                if not chunk:
                    raise OSError(f"{path} shrank while it was archived")
                left -= len(chunk)
                yield chunk
        padding = -info.size % tarfile.BLOCKSIZE
        yield tarfile.NUL * padding
        written += len(header) + info.size + padding
    # End of archive: two zero blocks, then zeros up to a whole record, as tarfile writes.
    end = 2 * tarfile.BLOCKSIZE
    end += -(written + end) % tarfile.RECORDSIZE
    yield tarfile.NUL * end


class ArtifactStore(BlobStore):
    """Files under one root folder, written atomically (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    def resolve(self, key: str) -> Path:
        """The file for `key`; refuses anything that is not a key `make_key` could build."""
        path = (self.root / Path(*check_key(key))).resolve()
        if not path.is_relative_to(self.root):
            raise UnsafeKeyError(f"key {key!r} leaves the store")
        return path

    def local_path(self, key: str) -> Path | None:
        return self.resolve(key)

    def exists(self, key: str) -> bool:
        return self.resolve(key).is_file()

    def size(self, key: str) -> int:
        path = self.resolve(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        return path.stat().st_size

    def write_stream(
        self, key: str, chunks: Iterable[bytes], max_bytes: int | None = None
    ) -> StoredObject:
        target = self.resolve(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                counted = copy_counted(chunks, out, max_bytes)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return StoredObject(key=key, size=counted.size, sha256=counted.sha256)

    def open(self, key: str) -> BinaryIO:
        return open(self.resolve(key), "rb")

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self.open(key) as handle:
            handle.seek(start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                want = CHUNK if remaining is None else min(CHUNK, remaining)
                chunk = handle.read(want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def list_keys(self, prefix: str = "") -> list[str]:
        base = self.resolve(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in base.rglob("*")
            if path.is_file() and not path.name.startswith(".")  # .partial-* are unfinished
        )

    def delete(self, key: str) -> None:
        self.resolve(key).unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is flushed too (POSIX).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "ArtifactStore",
    "BlobStore",
    "StorageUnavailableError",
    "StoredObject",
    "TooLargeError",
    "UnsafeKeyError",
    "check_key",
    "copy_counted",
    "make_key",
]
