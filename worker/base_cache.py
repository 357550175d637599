"""clo's BaseResultCache protocol over the shared Postgres table: the base model of a job is
evaluated once per (model, revision, prompt set, decoding, evaluator version), on any host."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.repositories import base_evaluations as repo


class DbBaseCache:
    """Each call is its own short transaction."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def get(self, key: str) -> dict[str, Any] | None:
        with session_scope(self._factory) as session:
            return repo.get(session, key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        with session_scope(self._factory) as session:
            repo.put(session, key, value)
