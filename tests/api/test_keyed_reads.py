"""GET /v1/jobs and GET /v1/jobs/{id}/events, now read in one hop through the API key
(api/jobs/keyed.py), answer byte for byte what the session-based reads built: every page of
a list with artifacts, queue positions, errors, evaluation and notes, each filter, and event
pages after a seq."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.jobs import service
from persistence.artifact_store import StoredObject
from persistence.db import session_scope
from persistence.models import Job, Tenant
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo
from persistence.repositories.jobs import JobFilters
from tests.support.tenants import TenantKey


def _old_list(app: Any, factory: sessionmaker[Session], tenant: TenantKey, **q: Any) -> str:
    with factory() as session:
        row = session.get(Tenant, tenant.tenant_id)
        assert row is not None
        page = service.list_jobs(
            session,
            row,
            limit=q.get("limit", 20),
            cursor=q.get("cursor"),
            filters=JobFilters(status=q.get("status"), base_model=q.get("base_model")),
            cursors=app.state.cursors,
        )
    return page.model_dump_json()


def _seed(insert_job: Callable[..., uuid.UUID], factory: Any, tenant: TenantKey) -> list[str]:
    ids = [insert_job(tenant) for _ in range(5)]  # queued: each has a queue position
    ids.append(
        insert_job(
            tenant,
            status="failed",
            error={"type": "user_error", "code": "bad_data", "message": "no rows"},
            resolved={"language_note": "de is a high-resource language", "model": {"n": 1}},
        )
    )
    ids.append(insert_job(tenant, status="succeeded", evaluation={"score": 1.0}))
    with session_scope(factory) as session:
        for name in ("report.json", "adapter.tar"):
            stored = StoredObject(key=f"k/{name}", size=12, sha256="ab" * 32)
            kind = "report" if name.endswith(".json") else "adapter"
            artifacts_repo.add_artifact(session, ids[-1], name, kind, stored)
        for n in range(5):
            events_repo.append_event(session, ids[0], "progress", f"step {n}", {"step": n})
    return [str(i) for i in ids]


def test_job_list_pages_and_events_answer_what_the_session_reads_did(
    client: TestClient,
    app: Any,
    factory: sessionmaker[Session],
    make_tenant: Callable[[], TenantKey],
    insert_job: Callable[..., uuid.UUID],
) -> None:
    tenant, other = make_tenant(), make_tenant()
    ids = _seed(insert_job, factory, tenant)
    insert_job(other)  # another tenant's job is never listed

    # Every page of 3, followed by cursor, equals the old read of the same page.
    cursor, seen = None, []
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        r = client.get("/v1/jobs", params=params, headers=tenant.headers)
        assert r.status_code == 200, r.text
        assert r.text == _old_list(app, factory, tenant, limit=3, cursor=cursor)
        body = r.json()
        seen += [job["id"] for job in body["data"]]
        if not body["has_more"]:
            break
        cursor = body["next_cursor"]
    assert sorted(seen) == sorted(ids)
    listed = client.get("/v1/jobs", headers=tenant.headers).json()["data"]
    assert {a["name"] for a in listed[0]["artifacts"]} == {"report.json", "adapter.tar"}
    assert listed[0]["evaluation_ready"] is True and listed[1]["notes"]
    assert [j["queue_position"] is not None for j in listed] == [False, False] + [True] * 5

    for status in ("queued", "succeeded", "running"):  # each filter shape is its own statement
        r = client.get("/v1/jobs", params={"status": status}, headers=tenant.headers)
        assert r.text == _old_list(app, factory, tenant, status=status)
    model = listed[0]["base_model"]
    r = client.get("/v1/jobs", params={"base_model": model, "limit": 2}, headers=tenant.headers)
    assert r.text == _old_list(app, factory, tenant, base_model=model, limit=2)
    assert len(r.json()["data"]) == 2 and r.json()["has_more"]

    for after, limit in ((0, 200), (2, 2), (5, 10)):
        r = client.get(
            f"/v1/jobs/{ids[0]}/events",
            params={"after": after, "limit": limit},
            headers=tenant.headers,
        )
        assert r.status_code == 200, r.text
        with factory() as session:
            job = session.get(Job, uuid.UUID(ids[0]))
            assert job is not None
            old = service.list_events(session, job, after=after, limit=limit)
        assert r.text == old.model_dump_json()
    assert client.get(f"/v1/jobs/{ids[0]}/events", headers=tenant.headers).json()["last_id"] > 0


def test_key_then_owner_then_cursor_are_checked_in_that_order(
    client: TestClient,
    make_tenant: Callable[[], TenantKey],
    insert_job: Callable[..., uuid.UUID],
) -> None:
    tenant, other = make_tenant(), make_tenant()
    theirs = insert_job(other)
    bad_key = {"Authorization": "Bearer clo_not-a-key"}
    assert client.get("/v1/jobs", headers=bad_key).status_code == 401
    # A tampered cursor is a 422 for a valid key, but a bad key still hears 401 first.
    assert client.get("/v1/jobs?cursor=forged", headers=bad_key).status_code == 401
    r = client.get("/v1/jobs?cursor=forged", headers=tenant.headers)
    assert r.status_code == 422 and r.json()["error"]["param"] == "cursor"
    for job_id in (theirs, "not-a-uuid", uuid.uuid4()):
        assert client.get(f"/v1/jobs/{job_id}/events", headers=bad_key).status_code == 401
        r = client.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    assert client.get(f"/v1/jobs/{theirs}/events", headers=other.headers).status_code == 200
