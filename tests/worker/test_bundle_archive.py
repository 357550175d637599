"""Bundles are tarred straight into the artifact store (its own partial file next to the key),
never into the system temp folder first, and read back byte for byte."""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile

import pytest

from persistence.artifact_store import ArtifactStore, make_key


@pytest.fixture
def bundle(tmp_path):
    folder = tmp_path / "bundle"
    (folder / "sub").mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (folder / "README.md").write_text("# ünïcode card\n", encoding="utf-8")
    (folder / "sub" / "empty.json").write_bytes(b"")
    (folder / "link").symlink_to(folder / "README.md")  # links are left out
    return folder


def test_archive_streams_into_the_store_without_the_system_temp_folder(
    tmp_path, bundle, monkeypatch
):
    # Any use of the system temp folder now fails: the folder does not exist.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-system-temp"))
    store = ArtifactStore(tmp_path / "store")
    key = make_key("jobs", "j1", "adapter.tar")
    stored = store.write_dir_archive(key, bundle)

    path = store.resolve(key)
    data = path.read_bytes()
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size % tarfile.RECORDSIZE == 0
    assert store.list_keys() == [key]
    assert [p.name for p in path.parent.iterdir()] == ["adapter.tar"]  # no partial left
    with tarfile.open(path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["README.md", "adapter_model.safetensors", "sub/empty.json"]
        for name, member in members.items():
            assert member.isfile()
            extracted = tar.extractfile(member)
            assert extracted is not None and extracted.read() == (bundle / name).read_bytes()
