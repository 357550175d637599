"""Tenant B's key on tenant A's job, events, metrics, artifacts, cancel and files: all 404."""

from __future__ import annotations

import pytest

from persistence.artifact_store import make_key
from persistence.db import session_scope
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo
from persistence.repositories import metrics as metrics_repo

JOB_READS = [
    "/v1/jobs/{id}",
    "/v1/jobs/{id}/events",
    "/v1/jobs/{id}/events/stream",
    "/v1/jobs/{id}/metrics",
    "/v1/jobs/{id}/evaluation",
    "/v1/jobs/{id}/artifacts",
    "/v1/jobs/{id}/artifacts/adapter.tar",
]


@pytest.fixture
def a_and_b(make_tenant, insert_job, factory, app):  # type: ignore[no-untyped-def]
    a, b = make_tenant(), make_tenant()
    job_id = insert_job(a, status="running", stage="training", evaluation={"v": 1})
    stored = app.state.store.write_bytes(make_key("jobs", str(job_id), "adapter.tar"), b"secret")
    with session_scope(factory) as session:
        events_repo.append_event(session, job_id, "progress", "step 1")
        metrics_repo.record_metrics(session, job_id, [(1, {"loss": 1.0})])
        artifacts_repo.add_artifact(session, job_id, "adapter.tar", "adapter", stored)
    return a, b, job_id


@pytest.mark.parametrize("path", JOB_READS)
def test_other_tenants_job_reads_are_404(client, a_and_b, path) -> None:  # type: ignore[no-untyped-def]
    a, b, job_id = a_and_b
    url = path.format(id=job_id)
    denied = client.get(url, headers=b.headers)
    assert denied.status_code == 404, denied.text
    assert denied.json()["error"]["code"] == "job_not_found"
    assert b"secret" not in denied.content
    if not path.endswith("stream"):  # the owner's stream would follow the running job
        assert client.get(url, headers=a.headers).status_code == 200


def test_other_tenant_cannot_cancel_or_list(client, a_and_b, load_job) -> None:  # type: ignore[no-untyped-def]
    a, b, job_id = a_and_b
    response = client.post(f"/v1/jobs/{job_id}/cancel", headers=b.headers)
    assert response.status_code == 404
    assert load_job(job_id).status == "running"
    assert client.get("/v1/jobs", headers=b.headers).json()["data"] == []
    assert [j["id"] for j in client.get("/v1/jobs", headers=a.headers).json()["data"]] == [
        str(job_id)
    ]


def test_other_tenants_file_is_404(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    a, b = make_tenant(), make_tenant()
    file_id = client.post(
        "/v1/files", content=b'{"prompt": "p", "response": "r"}\n', headers=a.headers
    ).json()["id"]
    assert client.get(f"/v1/files/{file_id}", headers=b.headers).status_code == 404
    assert client.get(f"/v1/files/{file_id}", headers=a.headers).status_code == 200
