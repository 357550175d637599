"""Sharded checkpoints of a full fine-tuning run (FSDP2), with torch.distributed.checkpoint.

`step-00000012/` under workdir/checkpoints-sharded holds DCP's files (each rank writes its
own shard of weights and AdamW moments, rank 0 the replicated pieces: the sft+dpo phase
reference, AdamW's step counts) and rank 0's `state.json` (step, data order, phase,
fingerprint, every rank's RNG). All ranks write into one temp folder rank 0 names; rank 0
renames it into place once every rank is done, so a crash leaves no half checkpoint.
DCP reshards on load: a checkpoint resumes on another number of ranks too, with the same
global batch (its fingerprint is that of the global batch).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

from clo.checkpoint import KEEP, PREFIX, latest_checkpoint, restore_rng
from clo.distributed import Ranks, barrier, broadcast_from_main, main_writes

if TYPE_CHECKING:
    from clo.distributed_train import DistributedRun

logger = logging.getLogger(__name__)


def _state(run: DistributedRun) -> dict[str, Any]:
    """What DCP saves and loads in place: model and optimizer shards, the phase reference."""
    model_state, optimizer_state = get_state_dict(run.model, run.optimizer)
    state: dict[str, Any] = {"model": model_state, "optimizer": optimizer_state}
    if run.phase_ref is not None:
        state["phase_ref"] = run.phase_ref
    return state


def save_sharded(run: DistributedRun) -> Path:
    """Every rank writes its shards of step `run.step`; returns the checkpoint folder."""
    final = run.ckpt_dir / f"{PREFIX}{run.step:08d}"
    tmp = Path(broadcast_from_main(str(final.parent / f".{final.name}.tmp-{uuid.uuid4().hex}")))
    if run.ranks.is_main:
        tmp.mkdir(parents=True)
    barrier()
    try:
        dcp_save(_state(run), checkpoint_id=tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    barrier()  # every shard is on disk

    def commit() -> Path:
        state = {
            **run._checkpoint_state(),
            "step": run.step,
            "rng": run._rank_rngs[0],
            "world_size": run.world_size,
            "has_phase_ref": run.phase_ref is not None,
        }
        (tmp / "state.json").write_text(json.dumps(state))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in _complete(run.ckpt_dir)[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("sharded checkpoint saved at step %d: %s", run.step, final)
        return final

    return main_writes(commit)


def _complete(directory: Path) -> list[Path]:
    found = [
        p
        for p in directory.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").exists()
    ]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def load_sharded(run: DistributedRun) -> None:
    """Resume `run` from its newest sharded checkpoint, if any (every rank calls this)."""
    path = latest_checkpoint(run.ckpt_dir)
    if path is None:
        return
    state = json.loads((path / "state.json").read_text())
    run._check_fingerprint(state, path)
    loaded = _state(run)  # templates: DCP fills them in place, resharding to this world
    if state.get("has_phase_ref"):
        loaded["phase_ref"] = torch.empty(len(run.encoded), 4)
    dcp_load(loaded, checkpoint_id=path)
    set_state_dict(
        run.model,
        run.optimizer,
        model_state_dict=loaded["model"],
        optim_state_dict=loaded["optimizer"],
    )
    run.phase_ref = loaded.get("phase_ref")
    run._restore_position(state, path)
    restore_rank_rng(state, run.ranks)


def restore_rank_rng(state: dict[str, Any], ranks: Ranks) -> None:
    """This rank's RNG as checkpointed, when the checkpoint came from as many ranks."""
    rngs = state.get("rng_ranks") or []
    if len(rngs) == ranks.world_size:
        restore_rng(rngs[ranks.rank])
