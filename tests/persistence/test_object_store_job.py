"""A whole job with no shared disk: the API and the worker are separate processes with their
own data folders, and the only place they exchange bytes is the S3 bucket (moto_server on
loopback). The seed file is uploaded to the API host, trained on by the worker, and the
adapter the worker stored is downloaded through the API with Range."""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from pathlib import Path

import boto3
import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from service_cli.demo import TINY_LM, TINY_MT, build_tiny_models
from service_cli.jobs_client import JobsClient
from service_cli.processes import free_port, start_api, start_worker, stop, wait_http
from tests.support.moto_s3 import MotoS3, moto_s3, s3_prefix  # noqa: F401  (fixtures)
from tests.support.specs import train_spec
from tests.support.tenants import new_tenant

pytestmark = pytest.mark.slow


def _host_env(pg_url: str, data_dir: Path, models: Path, s3: MotoS3, prefix: str) -> dict[str, str]:
    return {
        "CLO_ENVIRONMENT": "development",
        "CLO_DATABASE_URL": pg_url,
        "CLO_DATA_DIR": str(data_dir),
        # Model files are per host in a fleet; here both hosts name the same folders.
        "CLO_MODELS": json.dumps(
            {
                TINY_LM: {"source": str(models / TINY_LM)},
                TINY_MT: {"source": str(models / TINY_MT), "kind": "translator"},
            }
        ),
        "CLO_LEASE_SECONDS": "20",
        "CLO_HEARTBEAT_SECONDS": "1",
        "CLO_LOG_JSON": "false",
        "CLO_MIGRATE_ON_START": "false",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        **s3.env(prefix),
    }


def test_job_on_s3_with_no_shared_disk(
    pg_url: str,
    factory: sessionmaker[Session],
    moto_s3: MotoS3,  # noqa: F811
    s3_prefix: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    build_tiny_models(models)
    broker = {
        "CLO_BROKER_URL": f"redis://127.0.0.1:6379/{random.randint(1, 15)}",
        "CLO_QUEUE": f"gpu-{uuid.uuid4().hex[:8]}",
    }
    api_dir, worker_dir = tmp_path / "api-host", tmp_path / "worker-host"
    api_env = {**_host_env(pg_url, api_dir, models, moto_s3, s3_prefix), **broker}
    worker_env = {**_host_env(pg_url, worker_dir, models, moto_s3, s3_prefix), **broker}
    port = free_port()
    api = start_api(api_env, port, tmp_path / "logs" / "api.log")
    worker = start_worker(worker_env, broker["CLO_QUEUE"], "w@s3", tmp_path / "logs" / "w.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", api)
        tenant = new_tenant(factory, "s3")
        client = JobsClient(base, tenant.key)
        seed = b"".join(
            json.dumps({"prompt": f"What is {i} plus {i}?", "response": f"It is {2 * i}."}).encode()
            + b"\n"
            for i in range(12)
        )
        uploaded = httpx.post(
            f"{base}/v1/files", files={"file": ("seed.jsonl", seed)}, headers=tenant.headers
        ).json()
        spec = train_spec(2, 2, seed_data={"source": "file", "file_id": uploaded["id"]})
        # Random-weight translations are not German: keep them (this test is about bytes).
        spec.update(data_size=8, translator={"model": TINY_MT, "quality_check": "off"})
        job = client.submit(spec)
        deadline = time.monotonic() + 240
        while (state := client.get(job["id"]))["status"] not in {"succeeded", "failed"}:
            assert time.monotonic() < deadline, state
            time.sleep(0.3)
        logs = "\n".join(p.read_text()[-3000:] for p in (tmp_path / "logs").glob("*.log"))
        assert state["status"] == "succeeded", f"{state['error']}\n{logs}"

        adapter = next(a for a in state["artifacts"] if a["name"] == "adapter.tar")
        url = f"{base}{adapter['download_url']}"
        whole = httpx.get(url, headers=tenant.headers)
        assert hashlib.sha256(whole.content).hexdigest() == adapter["sha256"]
        part = httpx.get(url, headers={**tenant.headers, "Range": "bytes=512-1023"})
        assert part.status_code == 206 and part.content == whole.content[512:1024]
        client.close()
    finally:
        stop(worker)
        stop(api)

    # The bytes live in the bucket only; neither host kept an artifact folder.
    s3 = boto3.client("s3", endpoint_url=moto_s3.endpoint_url)
    listed = s3.list_objects_v2(Bucket=moto_s3.bucket, Prefix=f"{s3_prefix}/")
    keys = sorted(o["Key"].removeprefix(f"{s3_prefix}/") for o in listed["Contents"])
    assert f"jobs/{job['id']}/adapter.tar" in keys
    assert f"uploads/{tenant.tenant_id}/{uploaded['id']}.jsonl" in keys
    assert not any(k.startswith(".staging/") for k in keys)
    assert not (api_dir / "artifacts").exists() and not (worker_dir / "artifacts").exists()
