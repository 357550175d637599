"""A real S3-protocol server on loopback for the object-storage tests: moto_server (from the
moto[server] package) in its own process, one per test session, stopped by its PID at the end.

Each test gets its own prefix in one bucket (`s3_location`), so tests never see each other's
objects, and the settings overrides that point the service at it (`s3_settings`).
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service_cli.processes import free_port, spawn, stop, wait_http

BUCKET = "clo-test"
# moto accepts any credentials; botocore (s3fs, boto3) reads these standard variables.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str
    bucket: str
    pid: int

    def settings(self, prefix: str, **overrides: Any) -> dict[str, Any]:
        """Settings fields that put a service's storage at s3://bucket/prefix on this server."""
        return {
            "storage_url": f"s3://{self.bucket}/{prefix}",
            "storage_endpoint_url": self.endpoint_url,
            "storage_region": AWS_ENV["AWS_DEFAULT_REGION"],
            **overrides,
        }

    def env(self, prefix: str) -> dict[str, str]:
        """The same as CLO_* environment variables, plus the AWS credentials, for a process."""
        return {
            **AWS_ENV,
            **{f"CLO_{k.upper()}": str(v) for k, v in self.settings(prefix).items()},
        }


def _moto_server_command(port: int) -> list[str]:
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    if exe is None:
        pytest.fail("moto_server not found: install the dev extra (moto[server])")
    return [exe, "-H", "127.0.0.1", "-p", str(port)]


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto_server on a free loopback port with the test bucket created."""
    import boto3

    saved = {name: os.environ.get(name) for name in AWS_ENV}
    os.environ.update(AWS_ENV)
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    proc = spawn(_moto_server_command(port), {}, log)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{endpoint}/moto-api/", proc, timeout=30)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield MotoS3(endpoint_url=endpoint, bucket=BUCKET, pid=proc.pid)
    finally:
        stop(proc)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def s3_prefix() -> str:
    """A fresh key prefix, so each test has an empty store of its own."""
    return f"t-{uuid.uuid4().hex[:12]}"
