"""POST/GET /v1/jobs/{id}/exports on the real app and Postgres: validation (422 naming the
field), job state (409 with a code), tenant isolation (404), and one export per options."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from persistence.artifact_store import StoredObject
from persistence.db import session_scope
from persistence.models import JobExport
from persistence.repositories import artifacts as artifacts_repo
from tests.support.tenants import TenantKey


@pytest.fixture
def sent(app: Any) -> Iterator[list[str]]:
    """Export ids the app sent a wake-up for (after commit), instead of the broker."""
    ids: list[str] = []
    app.state.export_send = ids.append
    yield ids
    app.state.export_send = None


@pytest.fixture
def succeeded_job(
    tenant: TenantKey, insert_job: Callable[..., uuid.UUID], factory: sessionmaker[Session]
) -> Callable[..., uuid.UUID]:
    def make(source: str | None = "adapter.tar", **fields: Any) -> uuid.UUID:
        job_id = insert_job(tenant, **{"status": "succeeded", **fields})
        if source is not None:
            with session_scope(factory) as session:
                stored = StoredObject(key=f"jobs/{job_id}/{source}", size=10, sha256="0" * 64)
                kind = "adapter" if source == "adapter.tar" else "merged"
                artifacts_repo.add_artifact(session, job_id, source, kind, stored)
        return job_id

    return make


def _post(client: TestClient, tenant: TenantKey, job_id: uuid.UUID, body: Any) -> Any:
    return client.post(f"/v1/jobs/{job_id}/exports", json=body, headers=tenant.headers)


def test_a_lora_export_is_queued_once_per_options(
    client: TestClient, tenant: TenantKey, succeeded_job: Callable[..., uuid.UUID], sent: list[str]
) -> None:
    job_id = succeeded_job()
    first = _post(client, tenant, job_id, {"format": "lora"})
    assert first.status_code == 202, first.text
    export = first.json()
    assert export["status"] == "queued" and export["format"] == "lora"
    assert export["options"] == {"rank": 16, "dtype": "trained"}
    assert export["artifact_name"] == "lora-r16-trained.tar" and export["artifact"] is None
    assert first.headers["location"] == f"/v1/jobs/{job_id}/exports/{export['id']}"
    assert sent == [export["id"]]

    again = _post(client, tenant, job_id, {"format": "lora", "rank": 16, "dtype": "trained"})
    assert again.status_code == 200 and again.json()["id"] == export["id"]
    other = _post(client, tenant, job_id, {"format": "merged", "dtype": "bf16"})
    assert other.status_code == 202 and other.json()["artifact_name"] == "merged-bf16.tar"

    listed = client.get(f"/v1/jobs/{job_id}/exports", headers=tenant.headers).json()["data"]
    assert [e["id"] for e in listed] == [other.json()["id"], export["id"]]  # newest first
    one = client.get(f"/v1/jobs/{job_id}/exports/{export['id']}", headers=tenant.headers)
    assert one.status_code == 200 and one.json()["options"]["rank"] == 16


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"format": "gguf"}, "format"),
        ({}, "format"),
        ({"format": "lora", "rank": 0}, "rank"),
        ({"format": "lora", "rank": 4096}, "rank"),
        ({"format": "lora", "rank": "sixteen"}, "rank"),
        ({"format": "lora", "rank": True}, "rank"),
        ({"format": "lora", "rank": 16.5}, "rank"),
        ({"format": "merged", "rank": 8}, "rank"),
        ({"format": "lora", "dtype": "int8"}, "dtype"),
        ({"format": "lora", "energy": 0.9}, "energy"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    client: TestClient,
    tenant: TenantKey,
    succeeded_job: Callable[..., uuid.UUID],
    sent: list[str],
    body: dict[str, Any],
    param: str,
) -> None:
    response = _post(client, tenant, succeeded_job(), body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == param
    assert sent == []


def test_job_state_and_source_conflicts(
    client: TestClient, tenant: TenantKey, succeeded_job: Callable[..., uuid.UUID], sent: list[str]
) -> None:
    running = succeeded_job(status="running")
    response = _post(client, tenant, running, {"format": "lora"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "job_not_succeeded"
    failed = succeeded_job(source=None, status="failed")
    assert _post(client, tenant, failed, {"format": "lora"}).status_code == 409

    no_source = succeeded_job(source=None)
    response = _post(client, tenant, no_source, {"format": "merged"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "export_source_missing"

    full = succeeded_job(source="model.tar")
    response = _post(client, tenant, full, {"format": "merged"})
    assert response.status_code == 422
    assert response.json()["error"] | {"message": ""} == {
        "type": "user_error",
        "code": "format_not_applicable",
        "param": "format",
        "message": "",
    }
    assert _post(client, tenant, full, {"format": "lora", "rank": 4}).status_code == 202
    assert len(sent) == 1


def test_another_tenants_job_and_unknown_ids_are_404(
    client: TestClient,
    tenant: TenantKey,
    make_tenant: Callable[[], TenantKey],
    succeeded_job: Callable[..., uuid.UUID],
    sent: list[str],
) -> None:
    job_id = succeeded_job()
    export = _post(client, tenant, job_id, {"format": "lora"}).json()
    stranger = make_tenant()
    for response in (
        _post(client, stranger, job_id, {"format": "lora"}),
        client.get(f"/v1/jobs/{job_id}/exports", headers=stranger.headers),
        client.get(f"/v1/jobs/{job_id}/exports/{export['id']}", headers=stranger.headers),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"
    for missing in (uuid.uuid4(), "not-an-id"):
        response = client.get(f"/v1/jobs/{job_id}/exports/{missing}", headers=tenant.headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "export_not_found"
    assert sent == [export["id"]]


def test_a_failed_export_runs_again_under_the_same_id(
    client: TestClient,
    tenant: TenantKey,
    succeeded_job: Callable[..., uuid.UUID],
    sent: list[str],
    factory: sessionmaker[Session],
) -> None:
    job_id = succeeded_job()
    export = _post(client, tenant, job_id, {"format": "lora", "rank": 4}).json()
    with session_scope(factory) as session:
        row = session.get(JobExport, uuid.UUID(export["id"]))
        assert row is not None
        row.status, row.attempt = "failed", 3
        row.error = {"type": "user_error", "code": "invalid_input", "message": "x", "param": "rank"}
    shown = client.get(f"/v1/jobs/{job_id}/exports/{export['id']}", headers=tenant.headers).json()
    assert shown["status"] == "failed" and shown["error"]["param"] == "rank"

    again = _post(client, tenant, job_id, {"format": "lora", "rank": 4})
    assert again.status_code == 202
    assert again.json() | {"created_at": None} == {
        **export,
        "created_at": None,
        "status": "queued",
        "attempt": 0,
    }
    assert sent == [export["id"], export["id"]]
