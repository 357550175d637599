"""Checkpoint and resume of a training run, and the fingerprint that guards them.

A checkpoint holds the trained parameters, the optimizer state, the sft+dpo phase
reference, and a state.json with step, data order, phase, RNG and the run's fingerprint. A
run only resumes a checkpoint whose fingerprint is its own: the same maths-relevant config
and the same encoded data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from clo.checkpoint import latest_checkpoint, load_checkpoint, restore_rng, save_checkpoint
from clo.config import TrainConfig
from clo.encoding import EncodedSequence, encoding_fingerprint
from clo.errors import CloError
from clo.plan import Plan, global_batch_config
from clo.precision import resolve_precision

logger = logging.getLogger(__name__)

PHASE_REF = "__phase_reference_logps"

# Settings that do not change the maths may differ on resume (e.g. a retry saving memory).
# group_by_length only orders the data, and a resumed run keeps the order its checkpoint
# recorded; leaving it out also lets checkpoints written before it existed resume.
UNFINGERPRINTED = {
    "checkpoint_every",
    "gradient_checkpointing",
    "logprob_chunk_tokens",
    "group_by_length",
    "export_dtype",
    "pack_prompts",  # the same log-probs up to rounding (clo.packing)
    "memory_budget_mb",  # only decides gradient checkpointing
}
# Fields added after checkpoints existed count only when set away from their default.
# precision is fingerprinted as resolved (never "auto"): fp32, what every run before it
# trained in on CPU, leaves the fingerprint as it was.
ADDED_FIELDS = ("disable_dropout", "optimizer", "precision")


def run_fingerprint(config: TrainConfig, encoded: Sequence[tuple[EncodedSequence, ...]]) -> str:
    """Identifies a run so a checkpoint is only resumed by the same config and data."""
    cfg = config.model_dump(mode="json", exclude=UNFINGERPRINTED)
    for name in ADDED_FIELDS:
        if cfg[name] == TrainConfig.model_fields[name].default:
            del cfg[name]
    if config.method != "sft+dpo":
        # what every config carried before sft+dpo ran each phase over all the data, so
        # older checkpoints of the other methods resume; sft+dpo's own plan changed with it
        cfg["sft_steps_fraction"] = 0.5
        if config.method != "sft":
            cfg["sft_variant"] = "target"  # unused here; its default back then
    blob = json.dumps(cfg, sort_keys=True) + encoding_fingerprint(encoded)
    return hashlib.sha256(blob.encode()).hexdigest()


def checkpoint_precision(
    config: TrainConfig,
    encoded: Sequence[tuple[EncodedSequence, ...]],
    ckpt_dir: Path,
    world_size: int,
    device: torch.device,
) -> str:
    """The precision a run trains in. "auto" keeps the one its checkpoint trained in:
    a job resumed after an upgrade, or on a host that resolves auto otherwise."""
    chosen = resolve_precision(config.precision, device)
    path = latest_checkpoint(ckpt_dir) if config.precision == "auto" else None
    if path is None:
        return chosen
    try:
        stored = json.loads((path / "state.json").read_text()).get("fingerprint")
    except (OSError, ValueError):
        return chosen
    plan_config = global_batch_config(config, world_size)
    for candidate in (chosen, "fp32" if chosen == "bf16" else "bf16"):
        update = {"precision": candidate}
        if run_fingerprint(plan_config.model_copy(update=update), encoded) == stored:
            return candidate
    return chosen


class CheckpointedRun:
    """The checkpoint half of clo.training_run.TrainingRun, which sets these attributes.

    clo.distributed_train overrides `resume`, `checkpoint` and `_checkpoint_state`;
    clo.distributed_checkpoint calls `_check_fingerprint` and `_restore_position`.
    """

    config: TrainConfig
    ckpt_dir: Path
    fingerprint: str
    plan: Plan
    step: int
    optimizer_phase: str
    phase_ref: torch.Tensor | None
    named_params: list[tuple[str, torch.nn.Parameter]]
    optimizer: torch.optim.Optimizer

    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "data_order": list(self.plan.order),
            "phase": self.optimizer_phase,
        }

    def resume(self) -> None:
        path = latest_checkpoint(self.ckpt_dir)
        if path is None:
            return
        ckpt = load_checkpoint(path)
        self._check_fingerprint(ckpt.state, path)
        with torch.no_grad():
            for name, p in self.named_params:
                p.copy_(ckpt.tensors[name])
        self.phase_ref = ckpt.tensors.get(PHASE_REF)
        self.optimizer.load_state_dict(ckpt.optimizer)
        self._restore_position(ckpt.state, path)

    def _check_fingerprint(self, state: dict[str, Any], path: Path) -> None:
        if state.get("fingerprint") != self.fingerprint:
            raise CloError(
                f"checkpoint {path} belongs to a different config or data set; "
                "use a fresh workdir or the original config"
            )

    def _restore_position(self, state: dict[str, Any], path: Path) -> None:
        """Data order, RNG, step and phase from a checkpoint's state.json."""
        order = state.get("data_order")
        if order is not None and sorted(order) == sorted(self.plan.order):
            # the order the run started with, whatever this code's grouping would pick now
            self.plan = dataclasses.replace(self.plan, order=tuple(order))
        restore_rng(state["rng"])
        self.step = int(state["step"])
        # checkpoints from before phases were recorded come from single-phase runs
        self.optimizer_phase = state.get("phase") or self.config.method
        if self.optimizer_phase == "dpo" and self.phase_ref is None:
            raise CloError(f"checkpoint {path} is in the DPO phase but lacks its reference")
        logger.info("resumed from %s at step %d", path, self.step)

    def checkpoint(self) -> Path:
        tensors: dict[str, torch.Tensor] = {name: p.detach() for name, p in self.named_params}
        if self.phase_ref is not None:
            tensors[PHASE_REF] = self.phase_ref
        return save_checkpoint(
            self.ckpt_dir, self.step, tensors, self.optimizer.state_dict(), self._checkpoint_state()
        )
