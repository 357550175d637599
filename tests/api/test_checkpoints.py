"""GET /v1/jobs/{id}/checkpoints: the job's committed checkpoints newest first, each once, with
its loss, the kept one with its artifact; another tenant's job is a 404."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from persistence.artifact_store import StoredObject
from persistence.db import session_scope
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo
from persistence.repositories import metrics as metrics_repo
from tests.support.tenants import TenantKey


def test_checkpoints_are_listed_with_the_kept_one_downloadable(
    client: TestClient,
    tenant: TenantKey,
    make_tenant: Callable[[], TenantKey],
    insert_job: Callable[..., uuid.UUID],
    factory: sessionmaker[Session],
) -> None:
    job_id = insert_job(tenant, status="cancelled")
    with session_scope(factory) as session:
        for step in (2, 4, 4, 6):  # step 4 committed twice: a resumed attempt redid it
            data = {"stage": "training", "step": step}
            events_repo.append_event(session, job_id, "checkpoint", f"step {step}", data)
        metrics_repo.record_metrics(session, job_id, [(s, {"loss": 1.0 / s}) for s in (2, 4, 6)])
        stored = StoredObject(key=f"jobs/{job_id}/checkpoint-step-6.tar", size=3, sha256="a" * 64)
        artifacts_repo.add_artifact(session, job_id, "checkpoint-step-6.tar", "checkpoint", stored)

    response = client.get(f"/v1/jobs/{job_id}/checkpoints", headers=tenant.headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert [(c["step"], c["train_loss"]) for c in data] == [(6, 1 / 6), (4, 0.25), (2, 0.5)]
    assert data[0]["artifact"]["download_url"] == (
        f"/v1/jobs/{job_id}/artifacts/checkpoint-step-6.tar"
    )
    assert data[0]["artifact"]["kind"] == "checkpoint"
    assert [c["artifact"] for c in data[1:]] == [None, None]

    stranger = make_tenant()
    hidden = client.get(f"/v1/jobs/{job_id}/checkpoints", headers=stranger.headers)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "job_not_found"
