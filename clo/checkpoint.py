"""Atomic training checkpoints: written to a temp dir, then renamed into place.

A checkpoint `step-00000012/` holds
- `trainable.safetensors`: trainable parameters only (plus named extra tensors, e.g. the
  SFT-phase reference log-probs of sft+dpo),
- `optimizer.pt`: the optimizer state dict (tensors + numbers; loaded with weights_only=True),
- `state.json`: step, data order, RNG states of python/numpy/torch, config fingerprint.
The rename is the commit point, so a crash mid-write leaves no half checkpoint behind.

Inside `fenced_checkpoints(fence)` (the worker, holding a job's lease) writes go to the
writer's own folder `owner-<lease token>/` and only while `fence.may_write()` holds, and a
resume takes the writer's own newest checkpoint or the one an earlier holder committed
(recorded in the database under its lease), never just the newest on disk: a worker that
lost its lease can neither write where the new holder reads nor be resumed from.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from clo.atomic_dir import write_dir_atomically
from clo.errors import Stopped

logger = logging.getLogger(__name__)

PREFIX = "step-"
KEEP = 2  # older checkpoints are pruned after a new one lands
OWNER_PREFIX = "owner-"


class FencedOut(Stopped):
    """The writer lost its right to write checkpoints (its lease): nothing was written."""


@dataclass
class CheckpointFence:
    """Who writes checkpoints now, and which checkpoint a resume may take.

    `owner` names the writer's folder (a lease token); `committed` is a checkpoint an
    earlier holder recorded as its last; `may_write()` is asked before and after writing,
    and a False leaves nothing behind. `saved` is the last checkpoint this writer wrote.
    """

    owner: str
    may_write: Callable[[], bool]
    committed: Path | None = None
    saved: Path | None = field(default=None, init=False)


_fence: ContextVar[CheckpointFence | None] = ContextVar("checkpoint_fence", default=None)


@contextmanager
def fenced_checkpoints(fence: CheckpointFence) -> Iterator[CheckpointFence]:
    """Checkpoints saved and resumed inside this block follow `fence` (see the module doc)."""
    token = _fence.set(fence)
    try:
        yield fence
    finally:
        _fence.reset(token)


def current_fence() -> CheckpointFence | None:
    """The fence of the enclosing `fenced_checkpoints` block (handed on to training
    subprocesses: clo.distributed_stage), or None."""
    return _fence.get()


def owner_folder(directory: Path, owner: str) -> Path:
    return Path(directory) / f"{OWNER_PREFIX}{owner}"


def checkpoint_at(folder: Path, step: int) -> Path:
    """The checkpoint of `step` in `folder` (an owner's folder, or a checkpoints folder)."""
    return Path(folder) / f"{PREFIX}{step:08d}"


def step_of(path: Path) -> int:
    return int(path.name[len(PREFIX) :])


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    path: Path
    step: int
    tensors: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    state: dict[str, Any]


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as JSON-safe values."""
    py = random.getstate()
    npst: Any = np.random.get_state(legacy=True)
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
        "torch": torch.get_rng_state().tolist(),
        "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()]
        if torch.cuda.is_available()
        else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def save_checkpoint(
    directory: Path,
    step: int,
    tensors: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
) -> Path:
    """Write checkpoint for `step` atomically and prune older ones; returns its path.

    Under a fence the checkpoint goes to the owner's folder, and FencedOut is raised (with
    nothing left on disk) when the fence refuses before or after the files are written.
    """
    fence = _fence.get()
    if fence is not None:
        if not fence.may_write():
            raise FencedOut(f"checkpoint at step {step} not written: the lease is lost")
        directory = owner_folder(directory, fence.owner)
    final = checkpoint_at(directory, step)

    def write(tmp: Path) -> None:
        cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(cpu, str(tmp / "trainable.safetensors"))
        torch.save(optimizer_state, tmp / "optimizer.pt")
        full_state = {**state, "step": step, "rng": rng_state()}
        (tmp / "state.json").write_text(json.dumps(full_state))
        # Asked again just before the rename: the write may have outlasted the lease.
        if fence is not None and not fence.may_write():
            raise FencedOut(f"checkpoint at step {step} discarded: the lease is lost")

    write_dir_atomically(final, write)
    for old in _checkpoints(directory)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    if fence is not None:
        fence.saved = final
    logger.info("checkpoint saved at step %d: %s", step, final)
    return final


def _checkpoints(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    found = [
        p
        for p in directory.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").exists()
    ]
    return sorted(found, key=step_of)


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint directory, or None.

    Under a fence: the owner's own newest, else the committed one if it is complete and
    inside `directory`; checkpoints of other writers are never taken.
    """
    directory = Path(directory)
    fence = _fence.get()
    if fence is None:
        found = _checkpoints(directory)
        return found[-1] if found else None
    own = _checkpoints(owner_folder(directory, fence.owner))
    if own:
        return own[-1]
    committed = fence.committed
    if committed is None or not (committed / "state.json").is_file():
        return None
    if not committed.resolve().is_relative_to(directory.resolve()):
        return None
    return committed


def discard_other_owners(directory: Path, owner: str) -> None:
    """Remove every other writer's checkpoints, older unfenced ones too (call once the
    owner's own checkpoint is committed: nothing else can be resumed from then)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    keep = owner_folder(directory, owner).name
    for path in directory.iterdir():
        if path.is_dir() and path.name != keep:
            shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    state = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "trainable.safetensors"), device=str(map_location))
    optimizer = torch.load(path / "optimizer.pt", map_location=map_location, weights_only=True)
    return Checkpoint(
        path=path, step=int(state["step"]), tensors=tensors, optimizer=optimizer, state=state
    )
