"""The errors that escaped the JSON envelope or were miscounted: Range refusals of a download
(Starlette answers them in plain text), and a client that hangs up mid-body (logged as an
ERROR with a traceback and counted as a 500, though nothing on our side failed)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from persistence.artifact_store import ArtifactStore, make_key
from persistence.db import session_scope
from persistence.repositories import artifacts as artifacts_repo
from tests.support.live_api import api_env, live_api

SIZE = 1000


@pytest.fixture
def artifact_url(tenant, insert_job, factory, app) -> str:  # type: ignore[no-untyped-def]
    job_id = insert_job(tenant, status="succeeded")
    store: ArtifactStore = app.state.store
    stored = store.write_bytes(make_key("jobs", str(job_id), "adapter.tar"), b"a" * SIZE)
    with session_scope(factory) as session:
        artifacts_repo.add_artifact(session, job_id, "adapter.tar", "adapter", stored)
    return f"/v1/jobs/{job_id}/artifacts/adapter.tar"


@pytest.mark.parametrize("value", ["bytes=abc", "items=0-10", "bytes=500-100", "bytes"])
def test_malformed_range_is_a_400_envelope(client, tenant, artifact_url, value) -> None:  # type: ignore[no-untyped-def]
    response = client.get(artifact_url, headers={**tenant.headers, "Range": value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "invalid_range",
        "Range",
        "user_error",
    )


def test_unsatisfiable_range_is_a_416_envelope(client, tenant, artifact_url) -> None:  # type: ignore[no-untyped-def]
    response = client.get(artifact_url, headers={**tenant.headers, "Range": f"bytes={SIZE}-"})
    assert response.status_code == 416
    assert response.json()["error"]["code"] == "range_not_satisfiable"
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    ok = client.get(artifact_url, headers={**tenant.headers, "Range": "bytes=10-19"})
    assert ok.status_code == 206 and ok.content == b"a" * 10  # valid ranges are untouched


def test_wrong_method_is_a_405_envelope(client, tenant, artifact_url) -> None:  # type: ignore[no-untyped-def]
    for response in (
        client.put(artifact_url, headers=tenant.headers),
        client.put("/v1/downloads/some-token"),
        client.post("/metrics"),
    ):
        assert response.status_code == 405
        error = response.json()["error"]
        assert error["code"] == "method_not_allowed"
        assert response.headers["allow"] and response.headers["allow"] in error["message"]


def _hang_up_mid_body(port: int, path: str, content_type: str, key: str) -> None:
    """Declare a 100 kB body, send a tenth of it, close the connection."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: 100000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode() + b'{"prompt": "x", "response": "y"}\n' * 300)
        time.sleep(0.3)  # the app is now waiting for the rest of the body


def _statuses(base_url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{base_url}/metrics").text
    return {
        (s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "clo_http_requests_total"
    }


def test_client_hanging_up_mid_upload_is_a_warning_not_a_500(pg_url, tmp_path, tenant) -> None:  # type: ignore[no-untyped-def]
    env = api_env(pg_url, tmp_path, CLO_LOG_JSON="true")
    with live_api(env, tmp_path / "api.log") as api:
        _hang_up_mid_body(api.port, "/v1/files", "application/x-ndjson", tenant.key)
        _hang_up_mid_body(api.port, "/v1/jobs", "application/json", tenant.key)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            statuses = _statuses(api.url)
            if {("/v1/files", "499"), ("/v1/jobs", "499")} <= set(statuses):
                break
            time.sleep(0.1)
        log = api.log_text()
    assert statuses.get(("/v1/files", "499")) == 1, statuses
    assert statuses.get(("/v1/jobs", "499")) == 1, statuses
    assert not [key for key in statuses if key[1].startswith("5")], statuses
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    hang_ups = [r for r in records if "client disconnected" in r["message"]]
    assert [r["level"] for r in hang_ups] == ["WARNING", "WARNING"], log[-3000:]
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")], log[-3000:]
