"""The artifact store: atomic, checksummed writes, and no key escapes its root."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from persistence.artifact_store import ArtifactStore, TooLargeError, UnsafeKeyError, make_key


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
