"""GET /v1/jobs/{id} reads key, job, artifacts and queue position in one statement: it must
answer exactly what the ORM path (the list endpoint) answers, and keep auth and 503 behaviour."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from api.app import create_app
from persistence.artifact_store import make_key
from persistence.db import session_scope
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import tenants as tenants_repo
from tests.api.conftest import make_settings


def _listed(client, tenant, job_id):  # type: ignore[no-untyped-def]
    """The job as GET /v1/jobs shows it (built from ORM rows by a different code path)."""
    rows = client.get("/v1/jobs", params={"limit": 100}, headers=tenant.headers).json()["data"]
    return next(row for row in rows if row["id"] == str(job_id))


def test_status_read_matches_the_list_view_field_for_field(  # type: ignore[no-untyped-def]
    client, app, tenant, insert_job, factory
) -> None:
    queued = insert_job(tenant)
    error = {"type": "user_error", "code": "bad_data", "message": "no", "param": "data_size"}
    failed = insert_job(tenant, status="failed", error=error, attempt=2, evaluation=None)
    done = insert_job(
        tenant,
        status="succeeded",
        stage="packaging",
        step=20,
        total_steps=20,
        percent=100.0,
        metrics_summary={"loss": 0.25},
        evaluation={"win_rate": 0.6},
        finished_at=datetime.now(UTC),
    )
    with session_scope(factory) as session:
        for name, kind in (("report.json", "report"), ("adapter.tar", "adapter")):
            stored = app.state.store.write_bytes(make_key("jobs", str(done), name), b"x" * 7)
            artifacts_repo.add_artifact(session, done, name, kind, stored)

    for job_id in (queued, failed, done):
        response = client.get(f"/v1/jobs/{job_id}", headers=tenant.headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json() == _listed(client, tenant, job_id)

    shown = client.get(f"/v1/jobs/{done}", headers=tenant.headers).json()
    assert [a["name"] for a in shown["artifacts"]] == ["adapter.tar", "report.json"]
    assert shown["artifacts"][0]["download_url"] == f"/v1/jobs/{done}/artifacts/adapter.tar"
    assert shown["artifacts"][0]["size"] == 7 and shown["evaluation_ready"] is True
    # evaluation=None was written as a JSON null, which is "no evaluation" too.
    assert client.get(f"/v1/jobs/{failed}", headers=tenant.headers).json()["evaluation_ready"] is (
        False
    )
    assert client.get(f"/v1/jobs/{queued}", headers=tenant.headers).json()["artifacts"] == []


def test_queue_position_counts_queued_jobs_of_every_tenant_ahead(  # type: ignore[no-untyped-def]
    client, make_tenant, insert_job
) -> None:
    a, b = make_tenant(), make_tenant()
    # Far in the future so jobs other tests leave queued are all ahead of these.
    same_time = datetime(2999, 1, 1, tzinfo=UTC)
    first = insert_job(a, created_at=same_time)
    insert_job(b, created_at=same_time, status="running")  # not queued: not counted
    second = insert_job(b, created_at=same_time)
    later = insert_job(a, created_at=datetime(2999, 1, 2, tzinfo=UTC))

    def position(tenant, job_id):  # type: ignore[no-untyped-def]
        return client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).json()["queue_position"]

    # Equal created_at: the id breaks the tie, as the worker's queue order does.
    early, late = sorted([(str(first), a), (str(second), b)])
    assert position(late[1], late[0]) == position(early[1], early[0]) + 1
    assert position(a, later) == position(late[1], late[0]) + 1


def test_status_read_checks_the_key_before_the_job(client, tenant, insert_job, factory) -> None:  # type: ignore[no-untyped-def]
    job_id = insert_job(tenant)
    assert client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).status_code == 200
    for path in (f"/v1/jobs/{job_id}", "/v1/jobs/not-a-uuid"):
        missing = client.get(path)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"]["code"] == "missing_api_key"
        wrong = client.get(path, headers={"Authorization": f"Bearer {tenant.key}x"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"

    with session_scope(factory) as session:
        assert tenants_repo.revoke_key(session, tenant.prefix)
    revoked = client.get(f"/v1/jobs/{job_id}", headers=tenant.headers)
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "invalid_api_key"


def test_status_read_is_503_when_the_database_is_unreachable(data_dir) -> None:  # type: ignore[no-untyped-def]
    # Port 9 (discard) has no Postgres behind it: connecting fails at once.
    settings = make_settings("postgresql+psycopg://postgres@127.0.0.1:9/none", data_dir)
    with TestClient(create_app(settings, enqueue=lambda _id: None)) as down:
        response = down.get(
            "/v1/jobs/3f1c1d5e-2b1a-4c1e-9a53-1f1e2d3c4b5a",
            headers={"Authorization": "Bearer clo_anything"},
        )
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "system_error"
    assert response.headers["retry-after"]


def test_a_list_page_costs_the_same_few_queries_however_long(  # type: ignore[no-untyped-def]
    client, app, make_tenant, insert_job, factory
) -> None:
    from sqlalchemy import event

    def statements_for(limit: int, tenant) -> int:  # type: ignore[no-untyped-def]
        seen: list[str] = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731  (statement text)
        event.listen(app.state.engine, "before_cursor_execute", listener)
        try:
            page = client.get("/v1/jobs", params={"limit": limit}, headers=tenant.headers)
        finally:
            event.remove(app.state.engine, "before_cursor_execute", listener)
        assert page.status_code == 200 and len(page.json()["data"]) == limit
        return len(seen)

    small, large = make_tenant(), make_tenant()
    for tenant, count in ((small, 2), (large, 12)):
        for i in range(count):  # queued jobs and finished ones with artifacts
            job = insert_job(tenant, status="queued" if i % 2 else "succeeded")
            with session_scope(factory) as session:
                stored = app.state.store.write_bytes(make_key("jobs", str(job), "a.tar"), b"x")
                artifacts_repo.add_artifact(session, job, "a.tar", "adapter", stored)
    assert statements_for(12, large) == statements_for(2, small)
