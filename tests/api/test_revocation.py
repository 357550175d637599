"""Revoking a key (what `clo admin revoke-key` runs) ends what it had already opened: its
event streams at the next poll, and the download links it issued."""

from __future__ import annotations

import json
import threading
import time

from sqlalchemy import update

from persistence.artifact_store import ArtifactStore, make_key
from persistence.db import session_scope
from persistence.models import Job
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import events as events_repo
from persistence.repositories import tenants as tenants_repo
from tests.support.tenants import TenantKey


def _revoke(factory, key: TenantKey) -> None:  # type: ignore[no-untyped-def]
    with session_scope(factory) as session:
        assert tenants_repo.revoke_key(session, key.prefix)


def test_revoking_the_key_ends_its_open_stream(client, tenant, insert_job, factory) -> None:  # type: ignore[no-untyped-def]
    job_id = insert_job(tenant, status="running", stage="training")
    stop = threading.Event()

    def worker_writes_events() -> None:  # a job that keeps reporting progress
        step = 0
        while not stop.is_set() and step < 200:
            step += 1
            with session_scope(factory) as session:
                events_repo.append_event(session, job_id, "progress", f"step {step}")
            time.sleep(0.02)
        with session_scope(factory) as session:  # bounded: the stream ends even unrevoked
            events_repo.append_event(session, job_id, "succeeded", "done")
            session.execute(update(Job).where(Job.id == job_id).values(status="succeeded"))

    writer = threading.Thread(target=worker_writes_events)
    writer.start()
    lines: list[str] = []
    try:
        url = f"/v1/jobs/{job_id}/events/stream"
        with client.stream("GET", url, headers=tenant.headers) as response:
            assert response.status_code == 200
            events_seen, revoked_at = 0, 0
            for line in response.iter_lines():
                lines.append(line)
                events_seen += line.startswith("event: progress")
                if events_seen == 3 and not revoked_at:
                    _revoke(factory, tenant)
                    revoked_at = len(lines)
                    ended_by = time.monotonic()
            # the loop ends when the server closes the stream (the writer is still writing)
            ended_after = time.monotonic() - ended_by
    finally:
        stop.set()
        writer.join()
    after = lines[revoked_at:]
    errors = [json.loads(line[6:]) for line in after if line.startswith('data: {"error"')]
    assert errors and errors[0]["error"]["code"] == "api_key_revoked"
    assert "event: end" not in after
    # At most one poll's worth (0.05 s here) of events slips through after the revocation.
    assert sum(line.startswith("event: progress") for line in after) <= 10
    assert ended_after < 2.0
    again = client.get(url, headers=tenant.headers)
    assert again.status_code == 401 and again.json()["error"]["code"] == "invalid_api_key"


def test_revoked_key_invalidates_the_links_it_issued(  # type: ignore[no-untyped-def]
    client, tenant, insert_job, factory, app
) -> None:
    job_id = insert_job(tenant, status="succeeded")
    store: ArtifactStore = app.state.store
    stored = store.write_bytes(make_key("jobs", str(job_id), "adapter.tar"), b"x" * 1000)
    with session_scope(factory) as session:
        artifacts_repo.add_artifact(session, job_id, "adapter.tar", "adapter", stored)
        # a second key of the same tenant: its links must outlive the first key's revocation
        tenant_row = tenants_repo.get_tenant(session, tenant.tenant_id)
        assert tenant_row is not None
        _, second = tenants_repo.create_api_key(session, tenant_row)
    link_path = f"/v1/jobs/{job_id}/artifacts/adapter.tar/link"
    first_link = client.post(link_path, headers=tenant.headers).json()["url"]
    second_link = client.post(
        link_path, headers={"Authorization": f"Bearer {second.secret}"}
    ).json()["url"]
    assert client.get(first_link).status_code == 200

    _revoke(factory, tenant)

    refused = client.get(first_link)
    assert refused.status_code == 410
    assert refused.json()["error"]["code"] == "download_link_revoked"
    still = client.get(second_link)
    assert still.status_code == 200 and still.content == b"x" * 1000
    reissue = client.post(link_path, headers=tenant.headers)
    assert reissue.status_code == 401
