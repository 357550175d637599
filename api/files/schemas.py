"""Uploaded seed file schemas."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class FileRead(BaseModel):
    id: str
    filename: str
    size: int
    sha256: str
    n_examples: int
    created_at: datetime
