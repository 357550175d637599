"""Reading jobs: detail, pagination, filters, cancel, events, metrics, evaluation."""

from __future__ import annotations

import uuid

from persistence.db import session_scope
from persistence.repositories import events as events_repo
from persistence.repositories import metrics as metrics_repo


def test_cursor_pagination_walks_every_job_once(client, tenant, insert_job) -> None:  # type: ignore[no-untyped-def]
    created = {str(insert_job(tenant)) for _ in range(7)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/jobs", params=params, headers=tenant.headers).json()
        seen += [job["id"] for job in page["data"]]
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert pages == 3 and len(seen) == 7 and set(seen) == created
    # Newest first.
    stamps = [
        client.get(f"/v1/jobs/{i}", headers=tenant.headers).json()["created_at"] for i in seen
    ]
    assert stamps == sorted(stamps, reverse=True)


def test_invalid_cursor_is_422(client, tenant) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/v1/jobs", params={"cursor": "garbage!"}, headers=tenant.headers)
    assert response.status_code == 422 and response.json()["error"]["param"] == "cursor"
    bad_limit = client.get("/v1/jobs", params={"limit": 0}, headers=tenant.headers)
    assert bad_limit.status_code == 422 and bad_limit.json()["error"]["param"] == "limit"


def test_filters(client, tenant, insert_job) -> None:  # type: ignore[no-untyped-def]
    de = insert_job(tenant)
    sw = insert_job(tenant, spec={"target_language": "sw"}, target_language="sw")
    other_model = insert_job(tenant, spec={"base_model": "tiny-lm-2"}, base_model="tiny-lm-2")
    done = insert_job(tenant, status="succeeded")

    def ids(**params: str) -> set[str]:
        page = client.get("/v1/jobs", params=params, headers=tenant.headers).json()
        return {job["id"] for job in page["data"]}

    assert ids(target_language="sw") == {str(sw)}
    assert ids(base_model="tiny-lm-2") == {str(other_model)}
    assert ids(status="succeeded") == {str(done)}
    assert ids(status="queued", target_language="de", base_model="tiny-lm") == {str(de)}
    bad = client.get("/v1/jobs", params={"status": "bogus"}, headers=tenant.headers)
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "status"


def test_job_detail_shows_progress_error_and_queue_position(client, tenant, insert_job) -> None:  # type: ignore[no-untyped-def]
    first = insert_job(tenant)
    second = insert_job(tenant)
    pos1 = client.get(f"/v1/jobs/{first}", headers=tenant.headers).json()["queue_position"]
    pos2 = client.get(f"/v1/jobs/{second}", headers=tenant.headers).json()["queue_position"]
    assert pos2 == pos1 + 1
    running = insert_job(
        tenant,
        status="running",
        stage="training",
        step=5,
        total_steps=20,
        percent=25.0,
        eta_seconds=30.0,
        attempt=1,
    )
    job = client.get(f"/v1/jobs/{running}", headers=tenant.headers).json()
    assert job["queue_position"] is None and job["stage"] == "training"
    assert job["progress"] == {"step": 5, "total_steps": 20, "percent": 25.0, "eta_seconds": 30.0}
    error = {"type": "system_error", "code": "worker_lost", "message": "lost", "param": None}
    failed = insert_job(tenant, status="failed", error=error, attempt=3)
    assert client.get(f"/v1/jobs/{failed}", headers=tenant.headers).json()["error"] == error


def test_unknown_or_malformed_job_id_is_404(client, tenant) -> None:  # type: ignore[no-untyped-def]
    for job_id in (str(uuid.uuid4()), "not-a-uuid"):
        response = client.get(f"/v1/jobs/{job_id}", headers=tenant.headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"


def test_cancel_queued_is_immediate_running_becomes_cancelling(
    client, tenant, insert_job, load_job
) -> None:  # type: ignore[no-untyped-def]
    queued = insert_job(tenant)
    body = client.post(f"/v1/jobs/{queued}/cancel", headers=tenant.headers).json()
    assert body["status"] == "cancelled" and body["finished_at"] is not None
    running = insert_job(tenant, status="running", stage="training", attempt=1)
    body = client.post(f"/v1/jobs/{running}/cancel", headers=tenant.headers).json()
    assert body["status"] == "cancelling" and body["cancel_requested_at"] is not None
    assert load_job(running).finished_at is None  # the worker finishes it
    done = insert_job(tenant, status="succeeded")
    assert client.post(f"/v1/jobs/{done}/cancel", headers=tenant.headers).json()["status"] == (
        "succeeded"
    )
    events = client.get(f"/v1/jobs/{queued}/events", headers=tenant.headers).json()["data"]
    assert [e["type"] for e in events] == ["cancelled"]


def test_events_after_cursor(client, tenant, insert_job, factory) -> None:  # type: ignore[no-untyped-def]
    job_id = insert_job(tenant)
    with session_scope(factory) as session:
        for i in range(5):
            events_repo.append_event(session, job_id, "progress", f"step {i}", {"step": i})
    page = client.get(f"/v1/jobs/{job_id}/events", headers=tenant.headers).json()
    assert [e["id"] for e in page["data"]] == [1, 2, 3, 4, 5] and page["last_id"] == 5
    later = client.get(
        f"/v1/jobs/{job_id}/events", params={"after": 3}, headers=tenant.headers
    ).json()
    assert [e["data"]["step"] for e in later["data"]] == [3, 4]
    empty = client.get(
        f"/v1/jobs/{job_id}/events", params={"after": 5}, headers=tenant.headers
    ).json()
    assert empty == {"data": [], "last_id": 5}


def test_metrics_curves(client, tenant, insert_job, factory) -> None:  # type: ignore[no-untyped-def]
    job_id = insert_job(tenant, status="running", metrics_summary={"final_loss": 0.4})
    with session_scope(factory) as session:
        losses = [(2, 0.9), (1, 1.0), (3, 0.7)]
        rows = [(step, {"loss": loss, "lr": step * 1e-6}) for step, loss in losses]
        metrics_repo.record_metrics(session, job_id, rows)
        metrics_repo.record_metrics(session, job_id, [(3, {"loss": 0.6})])  # redone after a resume
    body = client.get(f"/v1/jobs/{job_id}/metrics", headers=tenant.headers).json()
    assert body["curves"]["loss"] == [
        {"step": 1, "value": 1.0},
        {"step": 2, "value": 0.9},
        {"step": 3, "value": 0.6},
    ]
    assert [p["step"] for p in body["curves"]["lr"]] == [1, 2]
    assert body["summary"] == {"final_loss": 0.4}


def test_evaluation_not_ready_then_ready(client, tenant, insert_job, factory) -> None:  # type: ignore[no-untyped-def]
    job_id = insert_job(tenant, status="running", stage="training")
    missing = client.get(f"/v1/jobs/{job_id}/evaluation", headers=tenant.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "evaluation_not_ready"
    report = {"version": 1, "target_language_rate": 0.8}
    ready = insert_job(tenant, status="succeeded", evaluation=report)
    body = client.get(f"/v1/jobs/{ready}/evaluation", headers=tenant.headers).json()
    assert body == {"job_id": str(ready), "report": report}
    assert client.get(f"/v1/jobs/{ready}", headers=tenant.headers).json()["evaluation_ready"]
