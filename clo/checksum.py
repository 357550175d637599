"""sha256 of files, and the SHA256SUMS file that lists every file of a folder."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks (never whole into memory)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_sha256sums(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below `folder`, also written to SHA256SUMS
    (the `sha256sum -c` format) last, so its presence marks a complete folder."""
    sums = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    (folder / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    return sums
