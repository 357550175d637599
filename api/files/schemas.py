"""Uploaded seed file schemas: OpenAI's file object shapes, with this service's fields added."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

FILE_PURPOSE: Literal["fine-tune"] = "fine-tune"


class FileRead(BaseModel):
    """OpenAI's `file` object (the SDK's FileObject) plus size, sha256 and n_examples."""

    id: str
    object: Literal["file"] = "file"
    bytes: int = Field(description="Stored size in bytes (OpenAI's name for `size`).")
    created_at: int = Field(description="Unix time in seconds.")
    filename: str
    purpose: Literal["fine-tune"] = FILE_PURPOSE
    status: Literal["processed"] = Field(
        "processed", description="Always processed: every line was validated at upload."
    )
    status_details: str | None = None
    expires_at: int | None = None
    size: int
    sha256: str
    n_examples: int


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileRead]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = Field(None, description="Pass as `after` for the next page.")


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool
