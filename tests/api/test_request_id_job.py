"""The POST's request id goes with the job it creates: into the job's first event (what a
worker reads when a wake-up comes without it); a client's id that is not short and
printable is replaced by a generated one, since it travels into events and queue headers."""

from __future__ import annotations

from tests.api.conftest import job_body


def test_job_keeps_the_creating_request_id(client, tenant) -> None:  # type: ignore[no-untyped-def]
    created = client.post(
        "/v1/jobs", json=job_body(), headers={**tenant.headers, "X-Request-Id": "req-77"}
    )
    assert created.status_code == 201 and created.headers["X-Request-Id"] == "req-77"
    events = client.get(f"/v1/jobs/{created.json()['id']}/events", headers=tenant.headers)
    first = events.json()["data"][0]
    assert first["type"] == "queued" and first["data"] == {"request_id": "req-77"}


def test_unusable_client_request_id_is_replaced(client, tenant) -> None:  # type: ignore[no-untyped-def]
    for bad in ("two words", "x" * 129):
        response = client.get("/v1/jobs", headers={**tenant.headers, "X-Request-Id": bad})
        assert response.status_code == 200
        generated = response.headers["X-Request-Id"]
        assert generated != bad and len(generated) == 16
