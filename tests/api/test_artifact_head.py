"""HEAD on artifact downloads: GET's Content-Length and checksum headers, no body, on a local
artifact folder and on an S3 bucket (moto_server on loopback, stream and redirect modes), by
API key and by signed link; a HEAD of a missing artifact is the GET's 404."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from persistence.artifact_store import BlobStore, make_key
from persistence.db import session_scope
from persistence.repositories import artifacts as artifacts_repo
from tests.support.api import api_settings
from tests.support.moto_s3 import moto_s3, s3_prefix  # noqa: F401  (fixtures)

SIZE = 123_457
CHECKSUM_HEADERS = ("content-length", "etag", "x-checksum-sha256", "repr-digest")


def _artifact(client: TestClient, factory, tenant, insert_job) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    job_id = insert_job(tenant, status="succeeded")
    data = os.urandom(SIZE)
    store: BlobStore = client.app.state.store  # type: ignore[attr-defined]
    stored = store.write_bytes(make_key("jobs", str(job_id), "adapter.tar"), data)
    with session_scope(factory) as session:
        artifacts_repo.add_artifact(session, job_id, "adapter.tar", "adapter", stored)
    return f"/v1/jobs/{job_id}/artifacts/adapter.tar", data


def _check_head(client: TestClient, url: str, data: bytes, headers: dict[str, str]) -> None:
    digest = hashlib.sha256(data).hexdigest()
    head = client.head(url, headers=headers)
    assert head.status_code == 200, head.text
    assert head.content == b""
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["etag"] == f'"{digest}"'
    assert head.headers["x-checksum-sha256"] == digest
    assert head.headers["accept-ranges"] == "bytes"
    get = client.get(url, headers=headers, follow_redirects=False)
    if get.status_code == 307:  # redirect mode: the bytes come from the store itself
        assert get.headers["x-checksum-sha256"] == digest
        stored = httpx.get(get.headers["location"])
        assert stored.status_code == 200 and stored.content == data
        return
    assert get.status_code == 200 and get.content == data
    assert {h: get.headers[h] for h in CHECKSUM_HEADERS} == {
        h: head.headers[h] for h in CHECKSUM_HEADERS
    }


def _check_link(client: TestClient, url: str, data: bytes, headers: dict[str, str]) -> None:
    link = client.post(f"{url}/link", headers=headers)
    assert link.status_code == 201, link.text
    _check_head(client, link.json()["url"], data, {})


def test_head_on_local_artifacts(client, factory, tenant, insert_job) -> None:  # type: ignore[no-untyped-def]
    url, data = _artifact(client, factory, tenant, insert_job)
    _check_head(client, url, data, tenant.headers)
    _check_link(client, url, data, tenant.headers)
    missing = client.head(url.replace("adapter.tar", "nope.tar"), headers=tenant.headers)
    assert missing.status_code == 404 and missing.content == b""
    assert client.head(url).status_code == 401  # no key: as the GET


@pytest.mark.parametrize("mode", ["stream", "redirect"])
def test_head_on_object_store_artifacts(  # type: ignore[no-untyped-def]
    pg_url,
    factory,
    tenant,
    insert_job,
    moto_s3,  # noqa: F811
    s3_prefix,  # noqa: F811
    tmp_path: Path,
    mode: str,
) -> None:
    settings = api_settings(pg_url, tmp_path, **moto_s3.settings(s3_prefix), download_mode=mode)
    with TestClient(create_app(settings, enqueue=lambda _job_id: None)) as client:
        url, data = _artifact(client, factory, tenant, insert_job)
        _check_head(client, url, data, tenant.headers)
        _check_link(client, url, data, tenant.headers)
