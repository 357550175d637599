"""POST /v1/files: streamed, size-limited, validated line by line; GET /v1/files/{id}."""

from __future__ import annotations

import hashlib
import json

from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings


def _jsonl(n: int) -> bytes:
    return b"".join(
        json.dumps({"prompt": f"Question {i}?", "response": f"Answer {i}."}).encode() + b"\n"
        for i in range(n)
    )


def test_raw_upload_is_counted_hashed_and_readable(client, tenant, app) -> None:  # type: ignore[no-untyped-def]
    body = _jsonl(12)
    response = client.post(
        "/v1/files",
        params={"filename": "../../seed.jsonl"},
        content=body,
        headers={**tenant.headers, "Content-Type": "application/jsonl"},
    )
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["n_examples"] == 12 and info["size"] == len(body)
    assert info["sha256"] == hashlib.sha256(body).hexdigest()
    assert info["filename"] == "seed.jsonl"  # a label only, never a path
    assert client.get(f"/v1/files/{info['id']}", headers=tenant.headers).json() == info


def test_multipart_upload_with_chat_messages(client, tenant) -> None:  # type: ignore[no-untyped-def]
    line = {
        "messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    }
    body = (json.dumps(line) + "\n").encode() * 9
    response = client.post(
        "/v1/files",
        files={"file": ("chat.jsonl", body, "application/jsonl")},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["n_examples"] == 9 and response.json()["filename"] == "chat.jsonl"
    missing = client.post("/v1/files", files={"other": ("x", b"{}")}, headers=tenant.headers)
    assert missing.status_code == 422 and missing.json()["error"]["param"] == "file"


def test_bad_lines_are_listed_with_line_and_field(client, tenant) -> None:  # type: ignore[no-untyped-def]
    body = (
        b'{"prompt": "ok", "response": "fine"}\n'
        b'{"prompt": "no answer"}\n'
        b"not json\n"
        b"\n"
        b'{"prompt": "", "response": "x"}\n'
    )
    response = client.post("/v1/files", content=body, headers=tenant.headers)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_jsonl" and error["param"] == "file"
    details = {(d["line"], d["field"]) for d in error["details"]}
    assert (2, "response") in details and (3, None) in details and (5, "prompt") in details
    assert "line 2" in error["message"] and "response" in error["message"]
    empty = client.post("/v1/files", content=b"\n\n", headers=tenant.headers)
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_file"


def test_oversized_upload_is_413_without_storing_it(pg_url, tmp_path, make_tenant) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(pg_url, tmp_path, max_upload_bytes=1000), lambda _id: None)
    tenant = make_tenant()
    big = _jsonl(100)
    assert len(big) > 1000
    with TestClient(app) as limited:
        declared = limited.post("/v1/files", content=big, headers=tenant.headers)
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "upload_too_large"

        def chunks():  # no Content-Length: the limit is enforced while streaming
            for i in range(0, len(big), 100):
                yield big[i : i + 100]

        streamed = limited.post("/v1/files", content=chunks(), headers=tenant.headers)
        assert streamed.status_code == 413
        multipart = limited.post(
            "/v1/files", files={"file": ("a.jsonl", big)}, headers=tenant.headers
        )
        assert multipart.status_code == 413
        small = limited.post("/v1/files", content=_jsonl(3), headers=tenant.headers)
        assert small.status_code == 201
    stored = list((tmp_path / "artifacts").rglob("*.jsonl"))
    assert [p.name for p in stored] == [f"{small.json()['id']}.jsonl"]
    assert list((tmp_path / "tmp").iterdir()) == []  # temp spool cleaned up


def test_unknown_file_is_404(client, tenant) -> None:  # type: ignore[no-untyped-def]
    for file_id in ("00000000-0000-0000-0000-000000000000", "nope"):
        response = client.get(f"/v1/files/{file_id}", headers=tenant.headers)
        assert response.status_code == 404 and response.json()["error"]["code"] == "file_not_found"
