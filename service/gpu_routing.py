"""GPU-aware queues: a job's training memory, estimated from its base model's config.json
alone (no torch: the API runs this at POST), picks the smallest GPU class of the fleet that
holds it, and the job's wake-ups go to that class's queue (`Settings.class_queue`).

The estimate (clo.memory_estimate.training_memory) counts the weights, the trained
parameters' master copies, gradients and optimizer state, and the activations of one
micro-batch at its worst: `batch_size` examples of four sequences padded to `max_length`.
A class holds a job when the estimate fits its usable share (90%: CUDA's context and the
allocator's fragmentation take the rest). The trainer turns gradient checkpointing on by
itself when the activations would not fit the device (clo.activation_policy), so a job that
only fits with checkpointing goes to the smallest class that holds it that way; one no class
holds either way is refused with a 422 naming the estimate and the largest class.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from clo.config import TrainConfig
from clo.errors import CloError
from clo.memory_estimate import GIB, USABLE_SHARE, ModelShape, Precision, training_memory
from clo.resolve import ResolvedJob
from persistence.settings import Settings

logger = logging.getLogger(__name__)

SEQUENCES_PER_EXAMPLE = 4  # a CLO/DPO example: two prompts x two responses


@dataclass(frozen=True)
class JobMemory:
    """One job's estimate with and without gradient checkpointing (bytes, one GPU)."""

    plain: int
    checkpointed: int
    gradient_checkpointing: bool  # asked for by the job: only `checkpointed` applies

    @property
    def needed(self) -> int:
        """What the job needs when it runs as asked (the figure a class must hold first)."""
        return self.checkpointed if self.gradient_checkpointing else self.plain


def read_model_config(source: str) -> dict[str, Any] | None:
    """config.json of a local model folder, or of a hub model in this host's HF cache."""
    folder = Path(source)
    path: Path | None = folder / "config.json" if folder.is_dir() else None
    if path is None:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        cached = try_to_load_from_cache(source, "config.json")
        path = Path(cached) if isinstance(cached, str) else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def trainable_params(
    shape: ModelShape, config: dict[str, Any], trainable: str, lora_r: int
) -> int | None:
    """Trained parameters of `trainable` (clo.trainable): None for full fine-tuning."""
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    kv = hidden // heads * int(config.get("num_key_value_heads") or heads)
    if trainable == "attention":  # q, k, v, o projections
        return shape.layers * (2 * hidden * hidden + 2 * hidden * kv)
    if trainable == "lora":  # r x (in + out) on each of q (h->h), k, v (h->kv), o (h->h)
        return shape.layers * lora_r * (6 * hidden + 2 * kv)
    return None


def estimate(resolved: ResolvedJob, config: dict[str, Any]) -> JobMemory:
    """The job's one-GPU training memory from its model config (see the module doc)."""
    return estimate_training(config, resolved.train)


def estimate_training(config: dict[str, Any], train: TrainConfig) -> JobMemory:
    """One-GPU training memory of `train` on the model of `config` (config.json values)."""
    shape = ModelShape.from_hf_config(SimpleNamespace(**config))
    trained = trainable_params(shape, config, train.trainable, train.lora_r)
    # "auto" is bf16 on a CUDA GPU, which is what a fleet class is.
    precision: Precision = "fp32" if train.precision == "fp32" else "bf16"
    tokens = train.batch_size * SEQUENCES_PER_EXAMPLE * train.max_length

    def total(checkpointing: bool) -> int:
        return training_memory(
            shape,
            precision=precision,
            optimizer=train.optimizer,
            trainable_params=trained,
            tokens_per_gpu=tokens,
            gradient_checkpointing=checkpointing,
        ).total

    return JobMemory(total(False), total(True), train.gradient_checkpointing)


def holds(gib: int, needed: int) -> bool:
    return needed <= gib * GIB * USABLE_SHARE


def pick_class(memory: JobMemory, classes: list[int]) -> tuple[int, int] | None:
    """(class, bytes it must hold): the smallest class that holds the job as asked, else the
    smallest that holds it with checkpointing; None when none does."""
    for needed in (memory.needed, memory.checkpointed):
        for gib in sorted(classes):
            if holds(gib, needed):
                return gib, needed
    return None


def with_estimate(resolved: ResolvedJob, settings: Settings) -> ResolvedJob:
    """`resolved` with its memory estimate, checked against the fleet's GPU classes; raises
    CloError (422 `job_too_large`, param `base_model`) when no class holds the job. Without
    GPU classes, or a config.json this host cannot read, the job is left unestimated (it
    then goes to the largest class)."""
    if not settings.gpu_classes:
        return resolved
    config = read_model_config(resolved.base_model.source)
    if config is None:
        logger.warning("no config.json for %s: not estimated", resolved.base_model.name)
        return resolved
    try:
        memory = estimate(resolved, config)
    except (KeyError, TypeError, ValueError) as exc:  # not a Llama-style config
        logger.warning("cannot estimate %s (%s): not estimated", resolved.base_model.name, exc)
        return resolved
    picked = pick_class(memory, settings.gpu_classes)
    if picked is None:
        largest = max(settings.gpu_classes)
        raise CloError(
            f"this job needs about {memory.checkpointed / GIB:.1f} GiB of GPU memory even with "
            f"gradient checkpointing ({memory.plain / GIB:.1f} GiB without), more than the "
            f"largest GPU class of this deployment holds ({largest} GiB, "
            f"{int(USABLE_SHARE * 100)}% usable); use trainable lora or attention, a smaller "
            "batch_size or max_length, or a smaller base_model",
            code="job_too_large",
            param="base_model",
        )
    return resolved.model_copy(update={"memory_estimate_bytes": picked[1]})


def queue_for(resolved: ResolvedJob | dict[str, Any] | None, settings: Settings) -> str:
    """The queue a job's wake-ups go to: its GPU class's, the largest class's when it was
    not estimated, or the one queue when the fleet has no classes."""
    if not settings.gpu_classes:
        return settings.queue
    if isinstance(resolved, dict):
        needed = resolved.get("memory_estimate_bytes")
    else:
        needed = None if resolved is None else resolved.memory_estimate_bytes
    classes = settings.gpu_classes
    if isinstance(needed, int):
        for gib in classes:
            if holds(gib, needed):
                return settings.class_queue(gib)
    # Not estimated, or the fleet's classes changed since: the largest is the safe choice.
    return settings.class_queue(max(classes))
