"""GET /v1/files (pages by `after`), DELETE /v1/files/{id} (frees the bytes; 409 while in use)."""

from __future__ import annotations

import json

from persistence.artifact_store import make_key


def _jsonl(n: int) -> bytes:
    return b"".join(
        json.dumps({"prompt": f"Question {i}?", "response": f"Answer {i}."}).encode() + b"\n"
        for i in range(n)
    )


def _upload(client, tenant, n: int = 3) -> dict:  # type: ignore[no-untyped-def]
    response = client.post("/v1/files", content=_jsonl(n), headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_list_pages_newest_first_and_only_the_tenants_own(client, make_tenant) -> None:  # type: ignore[no-untyped-def]
    tenant, other = make_tenant(), make_tenant()
    ids = [_upload(client, tenant, n)["id"] for n in (1, 2, 3)]
    foreign = _upload(client, other)["id"]

    first = client.get("/v1/files", params={"limit": 2}, headers=tenant.headers).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert [f["id"] for f in first["data"]] == ids[::-1][:2]
    assert first["last_id"] == ids[1]
    rest = client.get(
        "/v1/files", params={"limit": 2, "after": first["last_id"]}, headers=tenant.headers
    ).json()
    assert [f["id"] for f in rest["data"]] == [ids[0]] and rest["has_more"] is False
    oldest = client.get("/v1/files", params={"order": "asc"}, headers=tenant.headers).json()
    assert [f["id"] for f in oldest["data"]] == ids

    # An id of someone else's file is not a cursor of this tenant's list.
    bad = client.get("/v1/files", params={"after": foreign}, headers=tenant.headers)
    assert bad.status_code == 422
    assert bad.json()["error"]["param"] == "after"
    other_purpose = client.get("/v1/files", params={"purpose": "batch"}, headers=tenant.headers)
    assert other_purpose.json()["data"] == []


def test_file_object_is_openai_shaped(client, tenant) -> None:  # type: ignore[no-untyped-def]
    info = _upload(client, tenant, 4)
    assert info["object"] == "file" and info["purpose"] == "fine-tune"
    assert info["status"] == "processed"
    assert isinstance(info["created_at"], int) and info["created_at"] > 1_700_000_000
    assert info["bytes"] == info["size"] == len(_jsonl(4)) and info["n_examples"] == 4


def test_purpose_other_than_fine_tune_is_refused(client, tenant) -> None:  # type: ignore[no-untyped-def]
    files = {"file": ("seed.jsonl", _jsonl(2))}
    refused = client.post(
        "/v1/files", files=files, data={"purpose": "batch"}, headers=tenant.headers
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["param"] == "purpose"
    accepted = client.post(
        "/v1/files", files=files, data={"purpose": "fine-tune"}, headers=tenant.headers
    )
    assert accepted.status_code == 201 and accepted.json()["n_examples"] == 2


def test_delete_frees_the_stored_bytes(client, tenant, app) -> None:  # type: ignore[no-untyped-def]
    info = _upload(client, tenant)
    stored = app.state.store.resolve(
        make_key("uploads", str(tenant.tenant_id), f"{info['id']}.jsonl")
    )
    assert stored.is_file()

    deleted = client.delete(f"/v1/files/{info['id']}", headers=tenant.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": info["id"], "object": "file", "deleted": True}
    assert not stored.exists()
    assert client.get(f"/v1/files/{info['id']}", headers=tenant.headers).status_code == 404
    again = client.delete(f"/v1/files/{info['id']}", headers=tenant.headers)
    assert again.status_code == 404 and again.json()["error"]["code"] == "file_not_found"


def test_delete_is_refused_while_an_active_job_uses_the_file(  # type: ignore[no-untyped-def]
    client, tenant, make_tenant, insert_job, factory
) -> None:
    from persistence.db import session_scope
    from persistence.models import Job

    info = _upload(client, tenant)
    seed = {"seed_data": {"source": "file", "file_id": info["id"]}}
    job_id = insert_job(tenant, spec=seed, status="running")
    # Another tenant cannot delete it either: for them it does not exist.
    assert (
        client.delete(f"/v1/files/{info['id']}", headers=make_tenant().headers).status_code == 404
    )

    busy = client.delete(f"/v1/files/{info['id']}", headers=tenant.headers)
    assert busy.status_code == 409, busy.text
    assert busy.json()["error"]["code"] == "file_in_use"
    assert str(job_id) in busy.json()["error"]["message"]
    with session_scope(factory) as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status = "succeeded"
    assert client.delete(f"/v1/files/{info['id']}", headers=tenant.headers).status_code == 200
