"""The base-model result cache: shared across workers, first writer wins, JSON round trip."""

from __future__ import annotations

import uuid

from persistence.db import session_scope
from persistence.repositories import base_evaluations as repo
from worker.base_cache import DbBaseCache


def test_first_result_for_a_key_is_kept_and_read_back(factory) -> None:  # type: ignore[no-untyped-def]
    key = "answers-" + uuid.uuid4().hex + uuid.uuid4().hex  # as clo.evaluate.base_side keys
    cache = DbBaseCache(factory)
    assert cache.get(key) is None
    first = {"answers": {"Wie geht's?": "Gut."}, "usable_rate": 0.5, "nested": [1, 2.5]}
    cache.put(key, first)
    cache.put(key, {"answers": {}, "usable_rate": 0.0})  # a racing worker's copy: ignored
    assert cache.get(key) == first
    with session_scope(factory) as s:
        assert repo.get(s, "0" * 64) is None
