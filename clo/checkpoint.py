"""Atomic training checkpoints: written to a temp dir, then renamed into place.

A checkpoint `step-00000012/` holds
- `trainable.safetensors`: trainable parameters only (plus named extra tensors, e.g. the
  SFT-phase reference log-probs of sft+dpo),
- `optimizer.pt`: the optimizer state dict (tensors + numbers; loaded with weights_only=True),
- `state.json`: step, data order, RNG states of python/numpy/torch, config fingerprint.
The rename is the commit point, so a crash mid-write leaves no half checkpoint behind.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from clo.atomic_dir import write_dir_atomically

logger = logging.getLogger(__name__)

PREFIX = "step-"
KEEP = 2  # older checkpoints are pruned after a new one lands


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
    """Write checkpoint for `step` atomically and prune older ones; returns its path."""
    final = directory / f"{PREFIX}{step:08d}"

    def write(tmp: Path) -> None:
        cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(cpu, str(tmp / "trainable.safetensors"))
        torch.save(optimizer_state, tmp / "optimizer.pt")
        full_state = {**state, "step": step, "rng": rng_state()}
        (tmp / "state.json").write_text(json.dumps(full_state))

    write_dir_atomically(final, write)
    for old in _checkpoints(directory)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
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
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint directory, or None."""
    found = _checkpoints(Path(directory))
    return found[-1] if found else None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    state = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "trainable.safetensors"), device=str(map_location))
    optimizer = torch.load(path / "optimizer.pt", map_location=map_location, weights_only=True)
    return Checkpoint(
        path=path, step=int(state["step"]), tensors=tensors, optimizer=optimizer, state=state
    )
