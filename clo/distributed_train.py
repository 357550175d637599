"""The training stage over N ranks: the same loss, global batch, reference and log-probs.

Every rank runs this with the same arguments, inside a process group (clo.distributed).

- Global batch: batch_size per rank x world size x grad_accum. The plan is the one-process
  plan of batch_size x world size (clo.plan.global_batch_config): same order, same
  fingerprint; rank r forwards its contiguous share of every micro-batch.
- Loss: each rank's loss is its share of the whole step's loss (the step totals count all
  ranks' tokens and examples), so the ranks' gradients add up to the one-process gradient;
  DDP and FSDP2 average over ranks, hence the backward of world_size x the share.
- Reference: each rank scores its share once, gathered (clo.distributed_reference).
- Checkpoints: DDP writes the one-process format from rank 0 (resumable by one process with
  the same global batch, or by any rank count); FSDP2 writes a sharded checkpoint with
  torch.distributed.checkpoint (clo.distributed_checkpoint). Progress goes out from rank 0;
  the stop request is rank 0's, broadcast, so every rank stops at the same step.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from clo.checkpoint import latest_checkpoint, rng_state
from clo.config import TrainConfig
from clo.distributed import (
    Ranks,
    barrier,
    broadcast_from_main,
    current_ranks,
    gather_to_all,
    main_writes,
    shard_bounds,
)
from clo.distributed_checkpoint import load_sharded, restore_rank_rng, save_sharded
from clo.distributed_model import accumulation_context, is_sharded, wrap_for_ranks
from clo.distributed_reference import sharded_reference_logps
from clo.errors import CloError
from clo.pairs import Quadruple
from clo.step import step_metrics
from clo.trainer import Progress, ShouldStop, TrainingRun, TrainResult, run_training

SHARDED_CHECKPOINTS = "checkpoints-sharded"


class DistributedRun(TrainingRun):
    """One rank's part of a run; every collective below is entered by all ranks alike."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        quads: Sequence[Quadruple],
        config: TrainConfig,
        workdir: Path,
        reference_cache_dir: Path | None,
        ranks: Ranks,
    ):
        self.ranks = ranks
        self.world_size = ranks.world_size
        self.sharded = is_sharded(config.trainable)
        # a sharded checkpoint is not the one-process format: kept apart so one process
        # never tries to read it
        if self.sharded:
            self.checkpoint_subdir = SHARDED_CHECKPOINTS
        self._rank_rngs: list[Any] = []
        super().__init__(model, tokenizer, quads, config, workdir, reference_cache_dir)
        if self.plan.micro_batch < ranks.world_size:
            raise CloError(
                f"{len(self.encoded)} training examples give micro-batches of "
                f"{self.plan.micro_batch}, fewer than the {ranks.world_size} ranks",
                code="batch_size_not_divisible",
                param="gpus",
            )

    def _base_reference(self, model: Any, tokenizer: Any, cache_dir: Path | None) -> torch.Tensor:
        cfg = self.config
        return sharded_reference_logps(
            model,
            tokenizer,
            self.encoded,
            self.pad_id,
            self.ranks,
            cache_dir=cache_dir,
            batch_size=cfg.batch_size,
            chunk_tokens=cfg.logprob_chunk_tokens,
            precision=self.precision,
        )

    def _packing(self, model: Any) -> bool:
        # the DDP/FSDP2 wrappers act only through SequenceScorer.forward (unpacked rows);
        # packed rows call the decoder and head directly, which FSDP2's root unit would not
        # gather. On 1 rank too: resuming an FSDP2 checkpoint on one rank runs this class.
        return False

    def _wrap(self, model: Any) -> Any:
        return wrap_for_ranks(model, self.config.trainable, self.ranks)

    def _local(self, micro_batch: list[int]) -> list[int]:
        start, end = shard_bounds(len(micro_batch), self.ranks.rank, self.world_size)
        return micro_batch[start:end]

    def _accumulating(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        context: contextlib.AbstractContextManager[Any] = accumulation_context(
            self.step_model, last
        )
        return context

    def _backward(self, loss: torch.Tensor) -> None:
        # the wrappers average the ranks' gradients; the shares must add up
        (loss * self.world_size).backward()  # type: ignore[no-untyped-call]

    def _step_metrics(
        self, parts: list[tuple[dict[str, float], int]], tokens: int
    ) -> tuple[dict[str, float], int]:
        every = gather_to_all((parts, tokens))
        return step_metrics([p for rank_parts, _ in every for p in rank_parts]), sum(
            n for _, n in every
        )

    def _checkpoint_state(self) -> dict[str, Any]:
        return {**super()._checkpoint_state(), "rng_ranks": self._rank_rngs}

    def checkpoint(self) -> Path:
        self._rank_rngs = gather_to_all(rng_state())
        if self.sharded:
            return save_sharded(self)
        return main_writes(super().checkpoint)

    def resume(self) -> None:
        if self.sharded:
            load_sharded(self)
        else:
            super().resume()
            path = latest_checkpoint(self.ckpt_dir)
            if path is not None:
                state = json.loads((path / "state.json").read_text())
                restore_rank_rng(state, self.ranks)
        barrier()  # no rank starts while another still reads


def train_distributed(
    model: Any,
    tokenizer: Any,
    train_quads: Sequence[Quadruple],
    config: TrainConfig,
    workdir: Path,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    reference_cache_dir: Path | None = None,
) -> TrainResult:
    """clo.trainer.train on every rank of the process group (see the module doc).

    `model` is on this rank's device. Only rank 0 calls `progress` and `should_stop`.
    For trainable=full the returned model holds this rank's shards: every rank calls
    clo.distributed_model.full_state_dict(result.model) to give rank 0 the whole weights.
    """
    run = make_run(model, tokenizer, train_quads, config, workdir, reference_cache_dir)
    return run_distributed(run, progress, should_stop)


def make_run(
    model: Any,
    tokenizer: Any,
    train_quads: Sequence[Quadruple],
    config: TrainConfig,
    workdir: Path,
    reference_cache_dir: Path | None = None,
) -> DistributedRun:
    if not train_quads:
        raise CloError("no training examples: train_quads is empty")
    ranks = current_ranks()
    workdir = Path(workdir)
    if ranks.is_main:
        workdir.mkdir(parents=True, exist_ok=True)
    barrier()
    return DistributedRun(
        model, tokenizer, train_quads, config, workdir, reference_cache_dir, ranks
    )


def run_distributed(
    run: DistributedRun, progress: Progress | None, should_stop: ShouldStop | None
) -> TrainResult:
    """Train `run` to the end; rank 0 reports progress and decides when to stop."""
    main = run.ranks.is_main

    def stop() -> bool:
        return bool(broadcast_from_main(main and should_stop is not None and should_stop()))

    result = run_training(run, progress if main else None, stop)
    result.metrics["world_size"] = run.world_size
    return result
