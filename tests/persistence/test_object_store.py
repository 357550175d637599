"""The object store on a real S3-protocol server (moto_server on loopback): the same
interface as the local folder, and no half-written object is ever listed or served."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import boto3
import pytest

from persistence.artifact_store import TooLargeError, UnsafeKeyError, make_key
from persistence.settings import Settings
from persistence.storage import open_store
from persistence.storage_object import STAGING, ObjectStore
from tests.support.moto_s3 import MotoS3, moto_s3, s3_prefix  # noqa: F401  (fixtures)


def _store(moto_s3: MotoS3, prefix: str, tmp_path: Path) -> ObjectStore:  # noqa: F811
    store = open_store(Settings(data_dir=tmp_path, **moto_s3.settings(prefix)))
    assert isinstance(store, ObjectStore)
    return store


def test_store_read_list_delete(moto_s3: MotoS3, s3_prefix: str, tmp_path: Path) -> None:  # noqa: F811
    store = _store(moto_s3, s3_prefix, tmp_path)
    data = os.urandom(300_011)
    key = make_key("jobs", "j1", "adapter.tar")
    stored = store.write_stream(key, (data[i : i + 65536] for i in range(0, len(data), 65536)))
    assert stored == type(stored)(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    store.write_bytes(make_key("jobs", "j1", "evaluation.json"), b"{}")
    store.write_bytes(make_key("jobs", "j10", "adapter.tar"), b"other job")

    # Another client of the same bucket (another host) sees the finished object at its key.
    s3 = boto3.client("s3", endpoint_url=moto_s3.endpoint_url)
    body = s3.get_object(Bucket=moto_s3.bucket, Key=f"{s3_prefix}/{key}")["Body"].read()
    assert body == data
    assert store.exists(key) and store.size(key) == len(data)
    with store.open(key) as handle:
        handle.seek(len(data) - 5)
        assert handle.read() == data[-5:]
    assert b"".join(store.iter_range(key)) == data
    assert b"".join(store.iter_range(key, 10, 20)) == data[10:21]
    assert b"".join(store.iter_range(key, len(data) - 3)) == data[-3:]
    # Whole key parts: jobs/j1 does not take in jobs/j10; no staging object is listed.
    assert store.list_keys("jobs/j1") == ["jobs/j1/adapter.tar", "jobs/j1/evaluation.json"]
    assert len(store.list_keys()) == 3 and store.staging_keys() == []

    store.delete(key)
    store.delete(key)  # deleting what is gone is not an error
    assert not store.exists(key) and store.list_keys("jobs/j1") == ["jobs/j1/evaluation.json"]
    with pytest.raises(FileNotFoundError):
        store.size(key)
    with pytest.raises(FileNotFoundError):
        store.open(key)
    # A key prefix with objects under it is not an object.
    assert not store.exists("jobs")


def test_unsafe_keys_are_refused(moto_s3: MotoS3, s3_prefix: str, tmp_path: Path) -> None:  # noqa: F811
    store = _store(moto_s3, s3_prefix, tmp_path)
    for key in ("../escape", "jobs/../../x", "/abs", ".staging/x", "a//b", ""):
        with pytest.raises(UnsafeKeyError):
            store.exists(key)
        with pytest.raises(UnsafeKeyError):
            store.write_bytes(key, b"x")


def test_failed_write_publishes_nothing(moto_s3: MotoS3, s3_prefix: str, tmp_path: Path) -> None:  # noqa: F811
    store = _store(moto_s3, s3_prefix, tmp_path)
    key = make_key("jobs", "j", "half.bin")

    def broken():  # type: ignore[no-untyped-def]
        yield b"partial"
        raise OSError("disk vanished")

    with pytest.raises(OSError, match="disk vanished"):
        store.write_stream(key, broken())
    with pytest.raises(TooLargeError):
        store.write_stream(key, [b"x" * 10, b"y" * 10], max_bytes=15)
    assert not store.exists(key) and store.list_keys() == [] and store.staging_keys() == []


# A writer process that has uploaded 5 MiB parts of a 12 MiB object (a multipart upload of the
# staging key is in progress) and then hangs, to be SIGKILLed before it can publish.
_WRITER = textwrap.dedent(
    """
    import sys, time
    import fsspec
    from persistence.storage_object import ObjectStore
    fs = fsspec.filesystem("s3", endpoint_url=sys.argv[1], use_listings_cache=False,
                           default_block_size=5 * 2**20, skip_instance_cache=True)
    def chunks():
        yield b"a" * (6 * 2**20)
        yield b"b" * (6 * 2**20)
        print("parts sent", flush=True)
        time.sleep(120)
        yield b"never"
    ObjectStore(fs, sys.argv[2]).write_stream("jobs/j/model.tar", chunks())
    """
)


def test_write_killed_before_publish_is_never_served(
    moto_s3: MotoS3,  # noqa: F811
    s3_prefix: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    root = f"{moto_s3.bucket}/{s3_prefix}"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, moto_s3.endpoint_url, root],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"parts sent\n"
        s3 = boto3.client("s3", endpoint_url=moto_s3.endpoint_url)
        uploads = s3.list_multipart_uploads(Bucket=moto_s3.bucket, Prefix=s3_prefix)
        # The bytes are at the store, under a staging key, not the final one.
        assert [u["Key"].split("/")[1] for u in uploads["Uploads"]] == [STAGING]
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(10)

    store = _store(moto_s3, s3_prefix, tmp_path)
    key = "jobs/j/model.tar"
    assert not store.exists(key) and store.list_keys() == []
    with pytest.raises(FileNotFoundError):
        b"".join(store.iter_range(key))

    # A writer killed after its staging object was whole, before the copy, leaves that
    # object: readers still see nothing, and the sweep removes it once it is old.
    store.fs.pipe(f"{root}/{STAGING}/0123-model.tar", b"whole but unpublished")
    assert store.list_keys() == [] and not store.exists(key)
    assert store.staging_keys() == [f"{STAGING}/0123-model.tar"]
    assert store.sweep_staging(older_than=timedelta(hours=1)) == 0  # a write may be running
    assert store.sweep_staging(older_than=timedelta(seconds=-60)) == 1
    assert store.staging_keys() == []


def test_settings_refuse_bad_storage_urls(tmp_path: Path) -> None:
    for url, message in [
        ("s3://", "not a valid S3 bucket"),
        ("s3://Bad_Bucket/x", "not a valid S3 bucket"),
        ("s3://bucket/../x", "unsafe prefix part"),
        ("file://relative/x", "absolute path"),
        ("gs://bucket", "must start with file:// or s3://"),
        ("s3://bucket?x=1", "no query string"),
    ]:
        with pytest.raises(ValueError, match=message):
            Settings(data_dir=tmp_path, storage_url=url)
    with pytest.raises(ValueError, match="redirect needs an s3:// storage_url"):
        Settings(data_dir=tmp_path, download_mode="redirect")
    with pytest.raises(ValueError, match="redirect needs an s3:// storage_url"):
        Settings(data_dir=tmp_path, storage_url=f"file://{tmp_path}", download_mode="redirect")
    local = open_store(Settings(data_dir=tmp_path, storage_url=f"file://{tmp_path}/store"))
    assert local.local_path("jobs/a") == tmp_path / "store" / "jobs" / "a"
