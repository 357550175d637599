"""A cache of the base model's evaluation results, so the second job on a base generates nothing.

Keys hash everything that determines a result: the model (source, revision), the prompts
(a prompt set's hash), the decoding settings, and the evaluator's versions (this module's
EVALUATOR_VERSION, the verdict rules' VERDICT_VERSION and the report's SCHEMA_VERSION).
Values are plain JSON objects. Library mode stores one JSON file per key (`FileBaseCache`);
the service implements the same two-method protocol over a Postgres table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from clo.evaluate.report import SCHEMA_VERSION
from clo.evaluate.verdict import VERDICT_VERSION

logger = logging.getLogger(__name__)

# Changes whenever what the base side stores or how it is produced changes.
EVALUATOR_VERSION = "1"

_KEY_RE = re.compile(r"^[a-z_]+-[0-9a-f]{64}$")


@runtime_checkable
class BaseResultCache(Protocol):
    """Maps base_cache_key(...) strings to JSON-serialisable dicts."""

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or None when absent (or unreadable)."""
        ...

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store a value (replacing an existing one is fine: equal keys mean equal results)."""
        ...


def evaluator_versions() -> dict[str, str]:
    """The versions of the code that produces and reads cached base results."""
    return {"evaluator": EVALUATOR_VERSION, "verdict": VERDICT_VERSION, "schema": SCHEMA_VERSION}


def base_cache_key(
    *,
    kind: str,
    model_source: str,
    revision: str | None,
    prompt_set_hash: str,
    decoding: Mapping[str, Any],
    versions: Mapping[str, str] | None = None,
) -> str:
    """`<kind>-<sha256>` over a canonical JSON of everything that determines the result.

    `kind` names what is stored ("answers" for generated answers to a prompt source,
    "benchmark" for multiple-choice scores); `versions` defaults to evaluator_versions().
    """
    if not re.fullmatch(r"[a-z_]+", kind):
        raise ValueError(f"kind must be lower-case letters and underscores, got {kind!r}")
    payload = json.dumps(
        {
            "kind": kind,
            "model": model_source,
            "revision": revision,
            "prompts": prompt_set_hash,
            "decoding": dict(decoding),
            "versions": dict(versions if versions is not None else evaluator_versions()),
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return f"{kind}-{hashlib.sha256(payload.encode('utf-8')).hexdigest()}"


class FileBaseCache:
    """BaseResultCache as one JSON file per key under `directory` (atomic replace on write)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY_RE.fullmatch(key):
            # keys become file names: refuse anything base_cache_key would not produce
            raise ValueError(f"not a base cache key: {key!r}")
        return self.directory / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # a damaged entry is a miss, not a failure
            logger.warning("base cache entry %s unreadable (%s); ignoring it", path.name, exc)
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)  # readers see the old file or the new one, never half
        finally:
            tmp.unlink(missing_ok=True)
