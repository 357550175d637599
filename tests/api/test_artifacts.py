"""The artifact endpoints: listing, full and ranged downloads, signed links."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from persistence.artifact_store import ArtifactStore, make_key
from persistence.db import session_scope
from persistence.repositories import artifacts as artifacts_repo


@pytest.fixture
def artifact_job(tenant, insert_job, factory, app):  # type: ignore[no-untyped-def]
    """A succeeded job with a 300 KB adapter artifact in the app's store."""
    job_id = insert_job(tenant, status="succeeded")
    data = os.urandom(300_000)
    store: ArtifactStore = app.state.store
    stored = store.write_bytes(make_key("jobs", str(job_id), "adapter.tar"), data)
    with session_scope(factory) as session:
        artifacts_repo.add_artifact(session, job_id, "adapter.tar", "adapter", stored)
    return job_id, data


def test_list_and_full_download(client, tenant, artifact_job) -> None:  # type: ignore[no-untyped-def]
    job_id, data = artifact_job
    digest = hashlib.sha256(data).hexdigest()
    listed = client.get(f"/v1/jobs/{job_id}/artifacts", headers=tenant.headers).json()
    assert listed == [
        {**listed[0], "name": "adapter.tar", "kind": "adapter", "size": len(data), "sha256": digest}
    ]
    response = client.get(listed[0]["download_url"], headers=tenant.headers)
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["x-checksum-sha256"] == digest
    assert response.headers["etag"] == f'"{digest}"'
    assert response.headers["accept-ranges"] == "bytes"
    job = client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).json()
    assert [a["sha256"] for a in job["artifacts"]] == [digest]


def test_range_requests(client, tenant, artifact_job) -> None:  # type: ignore[no-untyped-def]
    job_id, data = artifact_job
    url = f"/v1/jobs/{job_id}/artifacts/adapter.tar"
    part = client.get(url, headers={**tenant.headers, "Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert part.headers["content-length"] == "1000"
    tail = client.get(url, headers={**tenant.headers, "Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == data[-100:]
    resume = client.get(url, headers={**tenant.headers, "Range": "bytes=299990-"})
    assert resume.content == data[299990:]
    outside = client.get(url, headers={**tenant.headers, "Range": f"bytes={len(data) + 5}-"})
    assert outside.status_code == 416


@pytest.mark.parametrize(
    "name",
    [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%2Fetc%2Fpasswd",
        "adapter.tar%00",
        "%2e%2e",
        "adapter.tar%2F..%2F..%2Fclo.db",
        "..%5C..%5Cclo.db",
    ],
)
def test_path_traversal_on_download_is_404(client, tenant, artifact_job, name) -> None:  # type: ignore[no-untyped-def]
    job_id, _ = artifact_job
    response = client.get(f"/v1/jobs/{job_id}/artifacts/{name}", headers=tenant.headers)
    assert response.status_code == 404
    assert b"root:" not in response.content
    assert response.json()["error"]["type"] == "user_error"


def test_artifact_missing_from_store_is_404_not_500(client, tenant, artifact_job, app) -> None:  # type: ignore[no-untyped-def]
    job_id, _ = artifact_job
    app.state.store.delete(make_key("jobs", str(job_id), "adapter.tar"))
    response = client.get(f"/v1/jobs/{job_id}/artifacts/adapter.tar", headers=tenant.headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "artifact_missing"


def test_download_link_streams_without_a_key(client, tenant, artifact_job) -> None:  # type: ignore[no-untyped-def]
    job_id, data = artifact_job
    issued = client.post(f"/v1/jobs/{job_id}/artifacts/adapter.tar/link", headers=tenant.headers)
    assert issued.status_code == 201, issued.text
    link = issued.json()
    assert link["url"].startswith("/v1/downloads/") and "expires_at" in link
    response = client.get(link["url"])  # no Authorization header: the link is the credential
    assert response.status_code == 200 and response.content == data
    assert response.headers["x-checksum-sha256"] == hashlib.sha256(data).hexdigest()
    assert 'filename="adapter.tar"' in response.headers["content-disposition"]
    part = client.get(link["url"], headers={"Range": "bytes=5-9"})
    assert part.status_code == 206 and part.content == data[5:10]


def test_download_link_refusals(client, tenant, make_tenant, artifact_job) -> None:  # type: ignore[no-untyped-def]
    job_id, _ = artifact_job
    base = f"/v1/jobs/{job_id}/artifacts"
    assert client.post(f"{base}/adapter.tar/link").status_code == 401  # issuing needs a key
    other = make_tenant()  # another tenant's job looks like a missing one
    assert client.post(f"{base}/adapter.tar/link", headers=other.headers).status_code == 404
    missing = client.post(f"{base}/nope.tar/link", headers=tenant.headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "artifact_not_found"
    url = client.post(f"{base}/adapter.tar/link", headers=tenant.headers).json()["url"]
    token = url.rsplit("/", 1)[1]
    # The signature's first character, not its last (whose discarded padding bits can
    # leave the decoded signature unchanged; see test_cursor_is_signed_and_tampering...).
    signed, _, signature = token.rpartition(".")
    forged = f"{signed}." + ("A" if signature[0] != "A" else "B") + signature[1:]
    for bad in (forged, "not-a-token", token.replace(".", "", 1)):
        answer = client.get(f"/v1/downloads/{bad}")
        assert answer.status_code == 404, bad
        assert answer.json()["error"]["code"] == "download_link_not_found"


def test_download_link_expires(tenant, artifact_job, app) -> None:  # type: ignore[no-untyped-def]
    import time

    from fastapi.testclient import TestClient

    from api.app import create_app

    job_id, _ = artifact_job
    # same signing key and store as the session app, links living one second
    settings = app.state.settings.model_copy(update={"download_link_seconds": 1})
    with TestClient(create_app(settings, lambda _id: None)) as short:
        url = short.post(
            f"/v1/jobs/{job_id}/artifacts/adapter.tar/link", headers=tenant.headers
        ).json()["url"]
        assert short.get(url).status_code == 200
        time.sleep(2.1)
        expired = short.get(url)
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "download_link_expired"


def test_every_api_process_signs_with_the_same_key(tmp_path: Path) -> None:
    import uuid

    from api.artifacts.links import LinkSigner
    from persistence.settings import Settings

    dev = Settings(data_dir=tmp_path / "dev")
    job, key = uuid.uuid4(), uuid.uuid4()
    token, _ = LinkSigner(dev).issue(job, "adapter.tar", key)
    assert LinkSigner(dev).read(token) == (job, "adapter.tar", key)  # key kept in the data dir
    assert (tmp_path / "dev" / ".download-link-key").stat().st_mode & 0o077 == 0
    prod_a = Settings(data_dir=tmp_path / "a", admin_secret="s3cret")
    prod_b = Settings(data_dir=tmp_path / "b", admin_secret="s3cret")
    token, _ = LinkSigner(prod_a).issue(job, "report.json", key)
    assert LinkSigner(prod_b).read(token) == (job, "report.json", key)  # derived from the secret
    assert not (tmp_path / "a" / ".download-link-key").exists()
    with pytest.raises(Exception, match="no such download link"):
        LinkSigner(Settings(data_dir=tmp_path / "c", admin_secret="other")).read(token)
