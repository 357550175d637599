"""DELETE /v1/jobs/{id} and DELETE /v1/jobs/{id}/artifacts/{name} over the real API and
Postgres: rows go, the bytes leave the artifact root, active jobs are refused, other
tenants get 404, and what is kept for audit stays."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from persistence.artifact_store import ArtifactStore, make_key
from persistence.db import session_scope
from persistence.models import DeletedJob, JobEvent, JobMetric, WebhookDelivery
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo
from persistence.repositories import metrics as metrics_repo
from persistence.repositories import webhooks as webhooks_repo

NAMES = ("adapter.tar", "report.json")


def _with_artifacts(app, factory, job_id: uuid.UUID) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """Two stored artifacts of the job, as the worker's packaging leaves them."""
    store: ArtifactStore = app.state.store
    paths = {}
    with session_scope(factory) as session:
        for name, kind in zip(NAMES, ("adapter", "report"), strict=True):
            stored = store.write_bytes(make_key("jobs", str(job_id), name), os.urandom(50_000))
            artifacts_repo.add_artifact(session, job_id, name, kind, stored)
            paths[name] = store.resolve(stored.key)
        events_repo.append_event(session, job_id, "succeeded", "done")
        metrics_repo.record_metrics(session, job_id, [(1, {"loss": 0.5})])
    assert all(p.is_file() for p in paths.values())
    return paths


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _count(factory, model, job_id: uuid.UUID) -> int:  # type: ignore[no-untyped-def]
    with factory() as session:
        return int(session.scalar(select(func.count()).where(model.job_id == job_id)) or 0)


def test_deleting_a_finished_job_frees_its_storage_and_rows(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory, app
) -> None:
    job_id = insert_job(tenant, status="succeeded")
    paths = _with_artifacts(app, factory, job_id)
    job_dir = paths["adapter.tar"].parent
    response = client.delete(f"/v1/jobs/{job_id}", headers=tenant.headers)
    assert response.status_code == 204, response.text
    assert not any(p.exists() for p in paths.values())
    assert _files_under(job_dir) == []
    assert client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}/artifacts", headers=tenant.headers).status_code == 404
    assert _count(factory, JobEvent, job_id) == 0 and _count(factory, JobMetric, job_id) == 0
    listed = client.get("/v1/jobs", headers=tenant.headers).json()["data"]
    assert str(job_id) not in {j["id"] for j in listed}
    with factory() as session:
        kept = session.get(DeletedJob, job_id)
        assert kept is not None
        assert (kept.tenant_id, kept.status, kept.artifacts_deleted, kept.bytes_freed) == (
            tenant.tenant_id,
            "succeeded",
            2,
            100_000,
        )
    assert client.delete(f"/v1/jobs/{job_id}", headers=tenant.headers).status_code == 404


@pytest.mark.parametrize("status", ["queued", "running", "cancelling"])
def test_an_active_job_is_409_and_keeps_everything(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory, app, status
) -> None:
    job_id = insert_job(tenant, status=status)
    paths = _with_artifacts(app, factory, job_id)
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/artifacts/adapter.tar"):
        response = client.delete(path, headers=tenant.headers)
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "job_not_finished" and status in error["message"]
    assert all(p.is_file() for p in paths.values())
    assert client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).json()["status"] == status


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_failed_and_cancelled_jobs_can_be_deleted(client, tenant, insert_job, status) -> None:  # type: ignore[no-untyped-def]
    job_id = insert_job(tenant, status=status)
    assert client.delete(f"/v1/jobs/{job_id}", headers=tenant.headers).status_code == 204
    assert client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).status_code == 404


def test_another_tenant_cannot_delete(client, make_tenant, insert_job, factory, app) -> None:  # type: ignore[no-untyped-def]
    owner, other = make_tenant(), make_tenant()
    job_id = insert_job(owner, status="succeeded")
    paths = _with_artifacts(app, factory, job_id)
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/artifacts/adapter.tar"):
        response = client.delete(path, headers=other.headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"
    assert all(p.is_file() for p in paths.values())
    assert client.get(f"/v1/jobs/{job_id}", headers=owner.headers).status_code == 200


def test_deleting_one_artifact_frees_its_bytes_only(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory, app
) -> None:
    job_id = insert_job(tenant, status="succeeded")
    paths = _with_artifacts(app, factory, job_id)
    url = f"/v1/jobs/{job_id}/artifacts/adapter.tar"
    assert client.delete(url, headers=tenant.headers).status_code == 204
    assert not paths["adapter.tar"].exists() and paths["report.json"].is_file()
    listed = client.get(f"/v1/jobs/{job_id}/artifacts", headers=tenant.headers).json()
    assert [a["name"] for a in listed] == ["report.json"]
    gone = client.get(url, headers=tenant.headers)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "artifact_not_found"
    assert client.delete(url, headers=tenant.headers).status_code == 404
    events = client.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers).json()["data"]
    noted = [e for e in events if e["type"] == "artifact_deleted"]
    assert [e["data"]["name"] for e in noted] == ["adapter.tar"]
    assert noted[0]["data"]["size"] == 50_000


@pytest.mark.parametrize("name", ["nope.tar", "..%2F..%2Fclo.db", "%2e%2e"])
def test_deleting_an_artifact_that_is_not_there_is_404(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, name
) -> None:
    job_id = insert_job(tenant, status="succeeded")
    response = client.delete(f"/v1/jobs/{job_id}/artifacts/{name}", headers=tenant.headers)
    assert response.status_code == 404


def test_webhook_deliveries_outlive_the_deleted_job(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory
) -> None:
    job_id = insert_job(tenant, status="succeeded")
    with session_scope(factory) as session:
        endpoint = webhooks_repo.create_endpoint(
            session,
            tenant.tenant_id,
            url="http://127.0.0.1:9/hook",
            event_types=["job.succeeded"],
            description="",
            secret="whsec_x",
        )
        session.add(
            WebhookDelivery(
                endpoint_id=endpoint.id,
                tenant_id=tenant.tenant_id,
                job_id=job_id,
                event_type="job.succeeded",
                body="{}",
            )
        )
    assert client.delete(f"/v1/jobs/{job_id}", headers=tenant.headers).status_code == 204
    log = client.get(f"/v1/webhooks/{endpoint.id}/deliveries", headers=tenant.headers).json()
    assert [d["job_id"] for d in log["data"]] == [str(job_id)]
    assert client.delete(f"/v1/webhooks/{endpoint.id}", headers=tenant.headers).status_code == 204
