"""The API with its storage on a real S3-protocol server (moto_server on loopback): uploads
land in the bucket where a worker on another host reads them, artifacts a worker stored are
downloaded with Range through the API, or by redirect to a presigned URL of the store."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from persistence.artifact_store import BlobStore, StoredObject, make_key
from persistence.db import session_scope
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import files as files_repo
from persistence.settings import Settings
from persistence.storage import open_store
from persistence.storage_object import STAGING, ObjectStore
from tests.support.api import api_settings
from tests.support.database import insert_job
from tests.support.moto_s3 import MotoS3, moto_s3, s3_prefix  # noqa: F401  (fixtures)
from tests.support.tenants import TenantKey, new_tenant


def _app(pg_url: str, data_dir: Path, s3: MotoS3, prefix: str, **overrides: Any) -> Any:
    settings = api_settings(pg_url, data_dir, **s3.settings(prefix, **overrides))
    return create_app(settings, enqueue=lambda _job_id: None)


def _other_host(s3: MotoS3, prefix: str, tmp_path: Path) -> BlobStore:
    """The store as a worker on another machine opens it: own data dir, same bucket."""
    return open_store(Settings(data_dir=tmp_path / "worker-host", **s3.settings(prefix)))


def _artifact(
    factory: sessionmaker[Session], tenant: TenantKey, store: BlobStore, data: bytes
) -> uuid.UUID:
    """A succeeded job whose adapter a worker stored and registered."""
    job_id = insert_job(factory, tenant_id=tenant.tenant_id, status="succeeded")
    stored = store.write_bytes(make_key("jobs", str(job_id), "adapter.tar"), data)
    with session_scope(factory) as session:
        artifacts_repo.add_artifact(session, job_id, "adapter.tar", "adapter", stored)
    return job_id


@pytest.fixture
def api_host(
    pg_url: str,
    moto_s3: MotoS3,  # noqa: F811
    s3_prefix: str,  # noqa: F811
    tmp_path: Path,
) -> Iterator[TestClient]:
    with TestClient(_app(pg_url, tmp_path / "api-host", moto_s3, s3_prefix)) as client:
        yield client


def test_upload_goes_to_the_bucket_for_other_hosts(
    api_host: TestClient,
    factory: sessionmaker[Session],
    moto_s3: MotoS3,  # noqa: F811
    s3_prefix: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    tenant = new_tenant(factory)
    body = b"".join(
        json.dumps({"prompt": f"Q{i}?", "response": f"A{i}."}).encode() + b"\n" for i in range(5)
    )
    answer = api_host.post(
        "/v1/files", files={"file": ("seed.jsonl", body)}, headers=tenant.headers
    )
    assert answer.status_code == 201, answer.text
    info = answer.json()
    assert info["sha256"] == hashlib.sha256(body).hexdigest()
    with session_scope(factory) as session:
        row = files_repo.get_file(session, uuid.UUID(info["id"]))
        assert row is not None
        key = row.key
    assert key == f"uploads/{tenant.tenant_id}/{info['id']}.jsonl"
    worker_store = _other_host(moto_s3, s3_prefix, tmp_path)
    with worker_store.open(key) as handle:
        assert handle.read() == body
    # Nothing landed on the API host's disk, nothing was left in staging.
    assert not (tmp_path / "api-host" / "artifacts").exists()
    assert isinstance(worker_store, ObjectStore) and worker_store.staging_keys() == []


def test_artifact_from_another_host_downloads_with_range(
    api_host: TestClient,
    factory: sessionmaker[Session],
    moto_s3: MotoS3,  # noqa: F811
    s3_prefix: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    tenant = new_tenant(factory)
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    job_id = _artifact(factory, tenant, _other_host(moto_s3, s3_prefix, tmp_path), data)
    url = f"/v1/jobs/{job_id}/artifacts/adapter.tar"

    whole = api_host.get(url, headers=tenant.headers)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-length"] == str(len(data))
    assert whole.headers["x-checksum-sha256"] == digest
    assert whole.headers["etag"] == f'"{digest}"' and whole.headers["accept-ranges"] == "bytes"
    assert 'filename="adapter.tar"' in whole.headers["content-disposition"]

    part = api_host.get(url, headers={**tenant.headers, "Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert part.headers["content-length"] == "1000"
    tail = api_host.get(url, headers={**tenant.headers, "Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == data[-100:]
    resume = api_host.get(url, headers={**tenant.headers, "Range": "bytes=299990-"})
    assert resume.status_code == 206 and resume.content == data[299990:]
    stale = {"Range": "bytes=0-9", "If-Range": '"another-version"'}
    assert api_host.get(url, headers={**tenant.headers, **stale}).content == data
    outside = api_host.get(url, headers={**tenant.headers, "Range": f"bytes={len(data)}-"})
    assert outside.status_code == 416
    assert outside.json()["error"]["code"] == "range_not_satisfiable"
    assert outside.headers["content-range"] == f"bytes */{len(data)}"
    malformed = api_host.get(url, headers={**tenant.headers, "Range": "pages=1-2"})
    assert malformed.status_code == 400 and malformed.json()["error"]["param"] == "Range"

    # The signed link streams the same bytes, without an API key.
    link = api_host.post(f"{url}/link", headers=tenant.headers).json()["url"]
    linked = api_host.get(link, headers={"Range": "bytes=5-9"})
    assert linked.status_code == 206 and linked.content == data[5:10]


def test_unpublished_object_is_never_served(
    api_host: TestClient,
    factory: sessionmaker[Session],
    moto_s3: MotoS3,  # noqa: F811
    s3_prefix: str,  # noqa: F811
) -> None:
    """A row whose object a worker never published (it died between staging and copy)."""
    tenant = new_tenant(factory)
    job_id = insert_job(factory, tenant_id=tenant.tenant_id, status="succeeded")
    key = make_key("jobs", str(job_id), "adapter.tar")
    s3 = boto3.client("s3", endpoint_url=moto_s3.endpoint_url)
    s3.put_object(
        Bucket=moto_s3.bucket, Key=f"{s3_prefix}/{STAGING}/{job_id}-adapter.tar", Body=b"half"
    )
    with session_scope(factory) as session:
        stored = StoredObject(key=key, size=4, sha256=hashlib.sha256(b"half").hexdigest())
        artifacts_repo.add_artifact(session, job_id, "adapter.tar", "adapter", stored)
    answer = api_host.get(f"/v1/jobs/{job_id}/artifacts/adapter.tar", headers=tenant.headers)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "artifact_missing"


def test_redirect_mode_sends_a_presigned_url(
    pg_url: str,
    factory: sessionmaker[Session],
    moto_s3: MotoS3,  # noqa: F811
    s3_prefix: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    tenant = new_tenant(factory)
    data = os.urandom(200_000)
    digest = hashlib.sha256(data).hexdigest()
    job_id = _artifact(factory, tenant, _other_host(moto_s3, s3_prefix, tmp_path), data)
    app = _app(pg_url, tmp_path / "api-host", moto_s3, s3_prefix, download_mode="redirect")
    url = f"/v1/jobs/{job_id}/artifacts/adapter.tar"
    with TestClient(app, follow_redirects=False) as api:
        answer = api.get(url, headers=tenant.headers)
        link = api.post(f"{url}/link", headers=tenant.headers).json()["url"]
        by_link = api.get(link)
        missing = api.get(f"/v1/jobs/{job_id}/artifacts/nope.tar", headers=tenant.headers)
    assert answer.status_code == 307 and answer.headers["x-checksum-sha256"] == digest
    location = answer.headers["location"]
    assert location.startswith(f"{moto_s3.endpoint_url}/{moto_s3.bucket}/{s3_prefix}/jobs/")
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=300" in location
    assert missing.status_code == 404  # still answered by the API, not redirected

    # The bytes come from the store itself; the API never sends them.
    fetched = httpx.get(location)
    assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == digest
    assert 'filename="adapter.tar"' in fetched.headers["content-disposition"]
    ranged = httpx.get(location, headers={"Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == data[100:200]
    # The signed-link endpoint redirects the same way.
    assert by_link.status_code == 307
    assert httpx.get(by_link.headers["location"]).content == data


def test_store_down_is_503_not_500(
    pg_url: str,
    factory: sessionmaker[Session],
    moto_s3: MotoS3,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Nothing listens at the endpoint: uploads and downloads say 503 storage_unavailable."""
    from service_cli.processes import free_port

    tenant = new_tenant(factory)
    job_id = insert_job(factory, tenant_id=tenant.tenant_id, status="succeeded")
    stored = StoredObject(key=make_key("jobs", str(job_id), "adapter.tar"), size=1, sha256="0" * 64)
    with session_scope(factory) as session:
        artifacts_repo.add_artifact(session, job_id, "adapter.tar", "adapter", stored)
    down = MotoS3(f"http://127.0.0.1:{free_port()}", moto_s3.bucket, pid=0)
    with TestClient(_app(pg_url, tmp_path, down, "p")) as api:
        upload = api.post(
            "/v1/files",
            files={"file": ("seed.jsonl", b'{"prompt": "Q?", "response": "A."}\n')},
            headers=tenant.headers,
        )
        download = api.get(f"/v1/jobs/{job_id}/artifacts/adapter.tar", headers=tenant.headers)
    for answer in (upload, download):
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "storage_unavailable"
        assert answer.headers["retry-after"] == "5"
