"""Checkpoints under a fence (clo.checkpoint.fenced_checkpoints): written in the owner's own
folder only while the fence allows, and resumed from the owner's own or the committed one,
never from another writer's newer checkpoint on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clo.checkpoint import (
    CheckpointFence,
    FencedOut,
    checkpoint_at,
    discard_other_owners,
    fenced_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    owner_folder,
    save_checkpoint,
)


def _save(directory: Path, step: int, value: float) -> Path:
    return save_checkpoint(directory, step, {"w": torch.full((2,), value)}, {}, {"fp": "x"})


def test_a_fenced_writer_saves_in_its_own_folder(tmp_path):
    fence = CheckpointFence(owner="aaa", may_write=lambda: True)
    with fenced_checkpoints(fence):
        path = _save(tmp_path, 3, 1.0)
    assert path == checkpoint_at(owner_folder(tmp_path, "aaa"), 3) and fence.saved == path
    assert latest_checkpoint(tmp_path) is None  # unfenced readers see only legacy layout


@pytest.mark.parametrize("refuse_on_call", [1, 2])
def test_a_refused_fence_leaves_nothing_on_disk(tmp_path, refuse_on_call):
    calls: list[int] = []

    def may_write() -> bool:  # refuses before writing (1) or just before the rename (2)
        calls.append(1)
        return len(calls) < refuse_on_call

    with fenced_checkpoints(CheckpointFence(owner="aaa", may_write=may_write)):
        with pytest.raises(FencedOut):
            _save(tmp_path, 3, 1.0)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_resume_takes_the_committed_checkpoint_not_the_newest_on_disk(tmp_path):
    with fenced_checkpoints(CheckpointFence(owner="old", may_write=lambda: True)):
        committed = _save(tmp_path, 3, 1.0)
        _save(tmp_path, 6, 2.0)  # written but never committed (the writer lost its lease)
    _save(tmp_path, 9, 3.0)  # an unfenced leftover, newer still
    fence = CheckpointFence(owner="new", may_write=lambda: True, committed=committed)
    with fenced_checkpoints(fence):
        assert latest_checkpoint(tmp_path) == committed
        own = _save(tmp_path, 4, 4.0)
        assert latest_checkpoint(tmp_path) == own  # the owner's own newest wins over it
    assert torch.equal(load_checkpoint(own).tensors["w"], torch.full((2,), 4.0))


def test_nothing_to_resume_without_a_commit(tmp_path):
    with fenced_checkpoints(CheckpointFence(owner="old", may_write=lambda: True)):
        _save(tmp_path, 3, 1.0)
    with fenced_checkpoints(CheckpointFence(owner="new", may_write=lambda: True)):
        assert latest_checkpoint(tmp_path) is None


def test_a_committed_path_outside_the_folder_is_not_taken(tmp_path):
    elsewhere = _save(tmp_path / "other-job", 3, 1.0)
    fence = CheckpointFence(owner="new", may_write=lambda: True, committed=elsewhere)
    with fenced_checkpoints(fence):
        assert latest_checkpoint(tmp_path / "checkpoints") is None


def test_discard_other_owners_keeps_only_the_owner(tmp_path):
    for owner in ("old", "new"):
        with fenced_checkpoints(CheckpointFence(owner=owner, may_write=lambda: True)):
            _save(tmp_path, 3, 1.0)
    _save(tmp_path, 2, 1.0)  # legacy, unfenced
    discard_other_owners(tmp_path, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["owner-new"]
