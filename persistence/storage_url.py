"""Parse the one storage URL setting: `file:///abs/folder` or `s3://bucket[/prefix]`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

# S3's bucket naming rules (lower case, digits, dots, hyphens; 3-63 characters).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass(frozen=True)
class StorageLocation:
    scheme: Literal["file", "s3"]
    folder: Path | None = None  # file: the local root
    bucket: str = ""  # s3
    prefix: str = ""  # s3: key prefix inside the bucket, no slashes at the ends

    @property
    def root(self) -> str:
        """The fsspec path of the store's root: 'bucket' or 'bucket/prefix'."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket


def parse_storage_url(url: str) -> StorageLocation:
    """The location a storage URL names; ValueError saying what is wrong otherwise."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError("storage_url takes no query string or fragment")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError("storage_url file:// needs an absolute path: file:///srv/clo")
        folder = Path(unquote(parts.path))
        if not folder.is_absolute():
            raise ValueError("storage_url file:// needs an absolute path: file:///srv/clo")
        return StorageLocation(scheme="file", folder=folder)
    if parts.scheme == "s3":
        if not _BUCKET.match(parts.netloc):
            raise ValueError(f"storage_url: {parts.netloc!r} is not a valid S3 bucket name")
        pieces = [p for p in parts.path.split("/") if p]
        for piece in pieces:
            if not _PREFIX_PART.match(piece) or ".." in piece:
                raise ValueError(f"storage_url: unsafe prefix part {piece!r}")
        return StorageLocation(scheme="s3", bucket=parts.netloc, prefix="/".join(pieces))
    raise ValueError("storage_url must start with file:// or s3://")
