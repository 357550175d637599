"""Folders that appear whole or not at all: built in a hidden temp sibling, then renamed."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def write_dir_atomically(final: Path, write: Callable[[Path], T]) -> T:
    """Run write(tmp) on an empty temp folder next to `final`, then rename it to `final`
    (replacing what was there); on any failure the temp folder is removed. Returns write's
    result. The rename is the commit point: a crash mid-write leaves no half folder."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        result = write(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result
