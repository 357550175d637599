"""Body limits hold on the bytes received, chunked or not; free-form fields are bounded (issue 15).

A 40 MB job spec refused with a Content-Length was accepted and stored when sent with
Transfer-Encoding: chunked, which declares no length.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings
from tests.support.api import job_body

LIMIT = 4096  # max_request_bytes of the app below


@pytest.fixture
def limited(pg_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(pg_url, tmp_path, max_request_bytes=LIMIT, max_upload_bytes=64 * 1024)
    with TestClient(create_app(settings, lambda _id: None)) as client:
        yield client


def _chunked(data: bytes, size: int = 1024) -> Iterator[bytes]:
    """A generator body: httpx sends it with Transfer-Encoding: chunked, no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _json_headers(tenant: Any) -> dict[str, str]:
    return {**tenant.headers, "Content-Type": "application/json"}


def _job_count(client: TestClient, tenant: Any) -> int:
    return len(client.get("/v1/jobs", params={"limit": 100}, headers=tenant.headers).json()["data"])


def test_chunked_job_spec_over_the_limit_is_413_and_not_stored(limited, tenant) -> None:  # type: ignore[no-untyped-def]
    # Many metadata values, each within its own bound: only the total is too large.
    body = json.dumps(job_body(metadata={f"k{i}": "x" * 250 for i in range(30)})).encode()
    assert len(body) > LIMIT
    response = limited.post("/v1/jobs", content=_chunked(body), headers=_json_headers(tenant))
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "request_too_large" and error["type"] == "user_error"
    assert _job_count(limited, tenant) == 0


def test_chunked_bodies_over_the_limit_are_413_on_every_route(limited, tenant) -> None:  # type: ignore[no-untyped-def]
    big = b'{"name": "' + b"x" * (LIMIT * 4) + b'"}'
    for path in ("/v1/comparisons", "/v1/jobs", "/v1/nowhere"):
        response = limited.post(path, content=_chunked(big), headers=_json_headers(tenant))
        # An unknown route reads no body: 404 is right there, never a stored request.
        expected = 404 if path == "/v1/nowhere" else 413
        assert response.status_code == expected, (path, response.text)
        assert "error" in response.json()


def test_chunked_body_under_the_limit_is_accepted(limited, tenant) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(job_body()).encode()
    response = limited.post("/v1/jobs", content=_chunked(body, 16), headers=_json_headers(tenant))
    assert response.status_code == 201, response.text


def test_uploads_keep_their_own_larger_limit_chunked(limited, tenant) -> None:  # type: ignore[no-untyped-def]
    line = json.dumps({"prompt": "Question?", "response": "Answer."}).encode() + b"\n"
    under = line * (4 * LIMIT // len(line))  # over max_request_bytes, under max_upload_bytes
    headers = {**tenant.headers, "Content-Type": "application/jsonl"}
    ok = limited.post("/v1/files", content=_chunked(under), headers=headers)
    assert ok.status_code == 201, ok.text
    over = line * (70 * 1024 // len(line))
    refused = limited.post("/v1/files", content=_chunked(over), headers=headers)
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "upload_too_large"


@pytest.mark.parametrize(
    ("metadata", "param_prefix"),
    [
        ({"note": "x" * 257}, "metadata.note"),
        ({"k" * 65: "v"}, "metadata."),
        ({"": "v"}, "metadata."),
    ],
)
def test_metadata_keys_and_values_are_bounded(client, tenant, metadata, param_prefix) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/jobs", json=job_body(metadata=metadata), headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["param"].startswith(param_prefix)


def test_metadata_at_its_bounds_is_accepted(client, tenant) -> None:  # type: ignore[no-untyped-def]
    metadata = {"k" * 64: "v" * 256}
    response = client.post("/v1/jobs", json=job_body(metadata=metadata), headers=tenant.headers)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["metadata"] == metadata


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("translator", {"model": "m" * 201}, "translator.model"),
        ("seed_data", {"source": "file", "file_id": "f" * 65}, "seed_data.file_id"),
        ("evaluation", {"baseline_job_id": "b" * 65}, "evaluation.baseline_job_id"),
    ],
)
def test_other_free_form_spec_strings_are_bounded(client, tenant, field, value, param) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/jobs", json=job_body(**{field: value}), headers=tenant.headers)
    assert response.status_code == 422, response.text
    # validation_error: refused by the bound, before any look-up (which would also refuse it).
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["param"] == param
