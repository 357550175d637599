"""The data order and phases of a training run: a pure function of the config and data size.

Every phase runs over all the training data: clo, dpo and sft have one phase of
`epochs` passes; sft+dpo has an SFT phase of `epochs` passes and then a DPO phase of
`epochs` passes over the same examples, each starting at an epoch boundary (METHOD.md:
"two phases of one run must not split the data between them"). `max_steps` caps the whole
run; sft+dpo gives each phase half of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from clo.config import TrainConfig
from clo.errors import CloError

# Examples sorted together when grouping by length; HF's LengthGroupedSampler uses 50 too.
LENGTH_GROUP_BATCHES = 50


@dataclass(frozen=True)
class Plan:
    """Step count, data order and phases of a run."""

    total_steps: int
    examples_per_step: int
    micro_batch: int
    order: tuple[int, ...]  # the phases' orders one after another, examples_per_step a step
    sft_steps: int  # sft+dpo: steps of the SFT phase; 0 otherwise

    def micro_batches(self, step: int) -> list[list[int]]:
        """The example ids of each micro-batch of optimizer step `step`."""
        start = step * self.examples_per_step
        ids = self.order[start : start + self.examples_per_step]
        return [list(ids[i : i + self.micro_batch]) for i in range(0, len(ids), self.micro_batch)]

    def phase(self, step: int, method: str) -> str:
        """The phase step `step` belongs to: the method itself, or sft / dpo for sft+dpo."""
        if method == "sft+dpo":
            return "sft" if step < self.sft_steps else "dpo"
        return method

    def phase_bounds(self, step: int, method: str) -> tuple[int, int]:
        """(first step, number of steps) of the phase `step` is in; each phase has its own LR."""
        if method == "sft+dpo":
            if step < self.sft_steps:
                return 0, self.sft_steps
            return self.sft_steps, self.total_steps - self.sft_steps
        return 0, self.total_steps


def phase_steps(n_examples: int, config: TrainConfig, per_step: int) -> list[int]:
    """Optimizer steps of each phase of the run."""
    per_phase = max(1, math.ceil(config.epochs * n_examples / per_step))
    if config.method != "sft+dpo":
        return [config.max_steps or per_phase]
    if config.max_steps is None:
        return [per_phase, per_phase]
    if config.max_steps < 2:
        raise CloError("method sft+dpo needs at least 2 steps (raise max_steps or epochs)")
    return [config.max_steps // 2, config.max_steps - config.max_steps // 2]


def global_batch_config(config: TrainConfig, world_size: int) -> TrainConfig:
    """The config of one process running the same global batch as `world_size` ranks.

    Rank r of a step takes its share of every micro-batch of this config's plan, so the plan,
    the data order and the fingerprint are those of one process with batch_size x world_size.
    """
    if world_size == 1:
        return config
    return config.model_copy(update={"batch_size": config.batch_size * world_size})


def make_plan(n_examples: int, config: TrainConfig, lengths: Sequence[int] | None = None) -> Plan:
    """Seeded data order: a fresh permutation per epoch, grouped by `lengths` when asked."""
    micro = min(config.batch_size, n_examples)
    per_step = micro * config.grad_accum
    steps = phase_steps(n_examples, config, per_step)
    gen = torch.Generator().manual_seed(config.seed)
    grouped = config.group_by_length and lengths is not None and micro > 1
    order: list[int] = []
    for n_steps in steps:
        phase: list[int] = []
        needed = n_steps * per_step
        while len(phase) < needed:  # a fresh permutation per epoch
            epoch = torch.randperm(n_examples, generator=gen).tolist()
            if grouped:
                assert lengths is not None
                # the first `fill` examples complete the previous epoch's last micro-batch
                fill = -len(phase) % micro
                epoch = epoch[:fill] + group_by_length(epoch[fill:], lengths, micro, gen)
            phase.extend(epoch)
        order.extend(phase[:needed])
    sft_steps = steps[0] if config.method == "sft+dpo" else 0
    return Plan(sum(steps), per_step, micro, tuple(order), sft_steps)


def group_by_length(
    examples: list[int], lengths: Sequence[int], micro: int, gen: torch.Generator
) -> list[int]:
    """Reorder one epoch so each micro-batch holds examples of similar length.

    A batch pads to its longest sequence. Windows of LENGTH_GROUP_BATCHES micro-batches of the
    random order are sorted by length and cut into micro-batches, which are then shuffled
    within the epoch: padding falls while batches still come in random order. The longest
    batch goes first, so a run that cannot fit it in memory fails at its first step, not
    hours in; a short last batch stays last so every other batch keeps its place.
    """
    window = LENGTH_GROUP_BATCHES * micro
    batches: list[list[int]] = []
    for start in range(0, len(examples), window):
        chunk = sorted(examples[start : start + window], key=lambda i: -lengths[i])
        batches.extend(chunk[i : i + micro] for i in range(0, len(chunk), micro))
    tail = [batches.pop()] if len(batches[-1]) < micro else []
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
        first = batches.pop(longest)
        shuffled = [batches[b] for b in torch.randperm(len(batches), generator=gen).tolist()]
        batches = [first, *shuffled]
    return [i for batch in [*batches, *tail] for i in batch]
