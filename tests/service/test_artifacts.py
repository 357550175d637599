"""Artifact store (atomic, checksummed, no escaping its root) and the download endpoint."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from persistence.artifact_store import (
    ArtifactStore,
    TooLargeError,
    UnsafeKeyError,
    make_key,
)
from persistence.db import session_scope
from persistence.repositories import artifacts as artifacts_repo


@pytest.mark.parametrize(
    "key",
    [
        "../etc/passwd",
        "/etc/passwd",
        "a/../../b",
        "a//b",
        "",
        "a/./b",
        "a\\..\\b",
        ".hidden",
        "jobs/x/..",
        "jobs/%2e%2e/x",
    ],
)
def test_store_refuses_keys_that_could_escape(tmp_path: Path, key: str) -> None:
    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(UnsafeKeyError):
        store.resolve(key)


def test_write_is_atomic_and_checksummed(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    data = os.urandom(3 * 1024 * 1024 + 17)
    key = make_key("jobs", "j1", "adapter.tar")
    stored = store.write_stream(key, (data[i : i + 65536] for i in range(0, len(data), 65536)))
    assert stored.sha256 == hashlib.sha256(data).hexdigest() and stored.size == len(data)
    assert store.resolve(key).read_bytes() == data
    assert b"".join(store.iter_range(key, 10, 20)) == data[10:21]

    def broken():  # type: ignore[no-untyped-def]
        yield b"partial"
        raise OSError("disk vanished")

    with pytest.raises(OSError):
        store.write_stream(make_key("jobs", "j1", "half.bin"), broken())
    with pytest.raises(TooLargeError):
        store.write_stream(make_key("jobs", "j1", "big.bin"), [b"x" * 10, b"y" * 10], max_bytes=15)
    # Neither the failed nor the oversized write leaves a file behind, finished or partial.
    assert sorted(p.name for p in (tmp_path / "jobs" / "j1").iterdir()) == ["adapter.tar"]


def test_dir_archive_round_trips(tmp_path: Path) -> None:
    import tarfile

    bundle = tmp_path / "adapter"
    bundle.mkdir()
    (bundle / "adapter_config.json").write_text("{}")
    (bundle / "adapter_model.safetensors").write_bytes(os.urandom(1000))
    store = ArtifactStore(tmp_path / "store")
    stored = store.write_dir_archive(make_key("jobs", "j", "adapter.tar"), bundle)
    with tarfile.open(store.resolve(stored.key)) as tar:
        assert sorted(tar.getnames()) == ["adapter_config.json", "adapter_model.safetensors"]


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
