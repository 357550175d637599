"""DELETE of jobs and artifacts with storage on a real S3-protocol server (moto_server on
loopback): the objects leave the bucket, as the local files leave the artifact root."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import boto3
from fastapi.testclient import TestClient

from api.app import create_app
from persistence.artifact_store import BlobStore, make_key
from persistence.db import session_scope
from persistence.repositories import artifacts as artifacts_repo
from tests.support.api import api_settings
from tests.support.moto_s3 import MotoS3, moto_s3, s3_prefix  # noqa: F401  (fixtures)


def _objects(s3: MotoS3, prefix: str) -> list[str]:
    listed = boto3.client("s3", endpoint_url=s3.endpoint_url).list_objects_v2(
        Bucket=s3.bucket, Prefix=prefix + "/"
    )
    return sorted(o["Key"].removeprefix(prefix + "/") for o in listed.get("Contents", []))


def test_deletes_free_objects_in_the_bucket(  # type: ignore[no-untyped-def]
    pg_url,
    factory,
    tenant,
    insert_job,
    moto_s3,  # noqa: F811
    s3_prefix,  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = api_settings(pg_url, tmp_path, **moto_s3.settings(s3_prefix))
    with TestClient(create_app(settings, enqueue=lambda _job_id: None)) as client:
        store: BlobStore = client.app.state.store  # type: ignore[attr-defined]
        jobs: list[uuid.UUID] = []
        for _ in range(2):
            job_id = insert_job(tenant, status="succeeded")
            with session_scope(factory) as session:
                for name in ("adapter.tar", "report.json"):
                    stored = store.write_bytes(make_key("jobs", str(job_id), name), os.urandom(999))
                    artifacts_repo.add_artifact(session, job_id, name, "adapter", stored)
            jobs.append(job_id)
        first, second = jobs
        assert len(_objects(moto_s3, s3_prefix)) == 4

        one = client.delete(f"/v1/jobs/{first}/artifacts/report.json", headers=tenant.headers)
        assert one.status_code == 204, one.text
        assert f"jobs/{first}/report.json" not in _objects(moto_s3, s3_prefix)
        assert client.delete(f"/v1/jobs/{second}", headers=tenant.headers).status_code == 204
    assert _objects(moto_s3, s3_prefix) == [f"jobs/{first}/adapter.tar"]
