"""Segment-level translation cache: a small protocol plus a local SQLite file store.

Keys hash everything that changes the output (model, revision, languages, decoding, text),
so a second job on the same data and language translates nothing. The service implements
the same protocol over a Postgres table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger(__name__)

# sqlite limits host parameters per statement (999 on old builds): look keys up in chunks
_LOOKUP_CHUNK = 500


@runtime_checkable
class TranslationCache(Protocol):
    """Maps cache keys (see cache_key) to translated segments."""

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """Return the cached translations of those keys that are present."""
        ...

    def put_many(self, items: Mapping[str, str]) -> None:
        """Store translations (an existing key keeps or replaces its value: both are fine)."""
        ...


def cache_key(
    model: str,
    revision: str | None,
    source_lang: str,
    target_lang: str,
    decoding: Mapping[str, Any],
    text: str,
) -> str:
    """sha256 over a canonical JSON of everything that determines the translation."""
    payload = json.dumps(
        [model, revision, source_lang, target_lang, dict(decoding), text],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class FileTranslationCache:
    """TranslationCache in one SQLite file under `directory` (safe across processes)."""

    FILENAME = "translations.sqlite3"

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / self.FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        with self._lock, self._conn:
            # WAL: readers in other processes are not blocked by a writing job
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS translations "
                "(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                chunk = wanted[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, value FROM translations WHERE key IN ({marks})", chunk
                )
                found.update(rows.fetchall())
        return found

    def put_many(self, items: Mapping[str, str]) -> None:
        if not items:
            return
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO translations (key, value) VALUES (?, ?)", items.items()
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM translations").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
