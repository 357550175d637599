"""CheckpointSync on a real store (the local-folder one; the S3 one runs in
tests/reliability/test_resume_other_host.py): upload only while the lease holds, a resume on
another work folder gets the committed checkpoint whole, pruning keeps only the commit."""

from __future__ import annotations

from pathlib import Path

from clo.checkpoint import checkpoint_at, owner_folder
from persistence.artifact_store import ArtifactStore
from worker.checkpoint_store import CheckpointSync, localize

JOB = "7d0c1a4e-0b7e-4f53-9d55-2a1d3c9e8f10"


def _checkpoint(workdir: Path, owner: str, step: int) -> Path:
    folder = checkpoint_at(owner_folder(workdir / "train" / "checkpoints", owner), step)
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(f'{{"step": {step}}}')
    (folder / "trainable.safetensors").write_bytes(bytes(range(256)) * 40)
    return folder


def test_localize_maps_another_hosts_folder_into_this_work_folder(tmp_path: Path) -> None:
    here = tmp_path / "b" / JOB
    recorded = Path(f"/srv/a/work/{JOB}/train/checkpoints/owner-abc")
    assert localize(recorded, JOB, here) == here / "train/checkpoints/owner-abc"
    # Nothing outside the work folder, whatever the row says.
    odd = Path(f"/x/{JOB}/../../etc/owner-abc")
    assert localize(odd, JOB, here) == here / "train/checkpoints/owner-abc"


def test_push_then_restore_on_another_work_folder(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    host_a, host_b = tmp_path / "a" / JOB, tmp_path / "b" / JOB
    reference = host_a / "train" / "reference"
    reference.mkdir(parents=True)
    (reference / "reference-abc.safetensors").write_bytes(b"logps")
    first, second = _checkpoint(host_a, "1", 3), _checkpoint(host_a, "1", 6)
    a = CheckpointSync(store, JOB, host_a, confirm=lambda: True)
    assert a.push(first) and a.push(second)
    a.prune(second)  # committed: step 6
    stored = store.list_keys(f"jobs/{JOB}")
    assert stored == [
        f"jobs/{JOB}/checkpoints/owner-1/step-00000006.tar",
        f"jobs/{JOB}/reference/reference-abc.safetensors",
    ]
    b = CheckpointSync(store, JOB, host_b, confirm=lambda: True)
    restored = b.restore(str(second.parent), 6)
    assert restored == checkpoint_at(host_b / "train/checkpoints/owner-1", 6)
    for name in ("state.json", "trainable.safetensors"):
        assert (restored / name).read_bytes() == (second / name).read_bytes()
    assert (host_b / "train/reference/reference-abc.safetensors").read_bytes() == b"logps"
    assert not [p for p in restored.parent.iterdir() if p.name.startswith(".pull-")]
    b.remove_all()
    assert store.list_keys(f"jobs/{JOB}") == []


def test_nothing_is_uploaded_once_the_lease_is_lost(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    workdir = tmp_path / "a" / JOB
    sync = CheckpointSync(store, JOB, workdir, confirm=lambda: False)
    assert not sync.push(_checkpoint(workdir, "1", 3))
    assert store.list_keys() == []
    # A committed checkpoint neither here nor in the store: the path, with nothing in it
    # (the trainer then starts over rather than failing).
    missing = sync.restore(f"/elsewhere/{JOB}/train/checkpoints/owner-2", 9)
    assert not (missing / "state.json").exists()
