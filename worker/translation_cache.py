"""clo's TranslationCache protocol over the shared Postgres table: a retried or repeated job
translates nothing it has translated before, even on another machine."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy.orm import Session, sessionmaker

from persistence.db import session_scope
from persistence.repositories import translation_cache as repo


class DbTranslationCache:
    """Each call is its own short transaction, so entries survive a crash mid-stage."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        with session_scope(self._factory) as session:
            return repo.get_many(session, keys)

    def put_many(self, items: Mapping[str, str]) -> None:
        if items:
            with session_scope(self._factory) as session:
                repo.put_many(session, items)
