"""Local-folder artifact store: atomic writes with sha256 computed while writing.

Keys are store-relative POSIX paths that this module builds from checked parts; nothing a
client sends is ever joined onto the file system without `resolve` vetting it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
CHUNK = 1024 * 1024


class UnsafeKeyError(ValueError):
    """A key that could escape the store (.., absolute, odd characters)."""


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


class ArtifactStore:
    """Files under one root folder, written atomically (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def resolve(self, key: str) -> Path:
        """The file for `key`; refuses anything that is not a key `make_key` could build."""
        parts = key.split("/")
        make_key(*parts)
        path = (self.root / Path(*parts)).resolve()
        if not path.is_relative_to(self.root):
            raise UnsafeKeyError(f"key {key!r} leaves the store")
        return path

    def exists(self, key: str) -> bool:
        return self.resolve(key).is_file()

    def write_stream(
        self, key: str, chunks: Iterable[bytes], max_bytes: int | None = None
    ) -> StoredObject:
        """Write chunks under `key`; readers only ever see the finished file."""
        target = self.resolve(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLargeError(max_bytes)
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    def write_file(self, key: str, source: Path) -> StoredObject:
        """Copy a local file into the store."""
        with open(source, "rb") as src:
            return self.write_stream(key, iter(lambda: src.read(CHUNK), b""))

    def write_bytes(self, key: str, data: bytes) -> StoredObject:
        return self.write_stream(key, [data])

    def write_dir_archive(self, key: str, source_dir: Path) -> StoredObject:
        """Store a folder (an adapter bundle) as one uncompressed tar; safetensors barely zip."""
        source_dir = Path(source_dir)
        if not source_dir.is_dir():
            raise NotADirectoryError(source_dir)
        fd, tmp_tar = tempfile.mkstemp(suffix=".tar")
        os.close(fd)
        try:
            with tarfile.open(tmp_tar, "w") as tar:
                for path in sorted(source_dir.rglob("*")):
                    if path.is_file() and not path.is_symlink():
                        tar.add(path, arcname=path.relative_to(source_dir).as_posix())
            return self.write_file(key, Path(tmp_tar))
        finally:
            Path(tmp_tar).unlink(missing_ok=True)

    def open(self, key: str) -> BinaryIO:
        return open(self.resolve(key), "rb")

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield bytes start..end (inclusive) in chunks, never the whole file at once."""
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
    "StoredObject",
    "TooLargeError",
    "UnsafeKeyError",
    "make_key",
]
