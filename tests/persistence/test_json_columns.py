"""JSON columns decode with orjson (issue 15: the stdlib decoder was a fifth of a list read's
CPU) and still read back every stored document exactly as the stdlib would."""

from __future__ import annotations

import json
import math

import pytest

from persistence.db import json_loads, session_scope
from persistence.repositories import events as events_repo

TRICKY = [
    '{"a": 1.5, "b": [1, 2, "x"], "c": null, "d": true}',
    '{"big": 123456789012345678901234567890}',  # orjson alone reads this as a float
    "[18446744073709551615, -9223372036854775808]",
    '{"nan": NaN, "inf": Infinity, "ninf": -Infinity}',  # orjson alone refuses these
    '"caf\\u00e9 \\ud83d\\ude00"',
    "0.1234567890123456789012",
    '{"a": 1, "a": 2}',
    "[1e-320, 2.5e308]",
]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("document", TRICKY)
def test_decodes_as_the_stdlib_does(document):
    assert _same(json_loads(document), json.loads(document))
    assert _same(json_loads(document.encode()), json.loads(document))


def test_a_stored_big_integer_reads_back_exact(factory, make_job):
    """Through Postgres and the engine's decoder: the value an event stored is the value read."""
    job_id = make_job()
    data = {"big": 2**100 + 1, "small": 7, "ratio": 0.1}  # Postgres refuses NaN in JSON
    with session_scope(factory) as s:
        events_repo.append_event(s, job_id, "progress", "step", data)
    with session_scope(factory) as s:
        (event,) = events_repo.list_events(s, job_id)
    assert event.data["big"] == 2**100 + 1 and isinstance(event.data["big"], int)
    assert event.data["small"] == 7 and event.data["ratio"] == 0.1
