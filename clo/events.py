"""Typed events a run reports through its `progress` hook (the pipeline to the worker / CLI).

Library functions (trainer, translation, evaluation) call back with their per-step numbers;
the pipeline turns those into these events, so a consumer never guesses at magic keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Stage = Literal["translating", "training", "evaluating", "packaging"]

# Keys of a library callback that describe the step rather than measure it.
_STEP_KEYS = frozenset({"stage", "step", "total_steps", "event", "message", "path", "epoch_step"})


@dataclass(frozen=True)
class StageStarted:
    """A stage began; `resumed`: its finished output was found and is reused."""

    stage: Stage
    resumed: bool = False


@dataclass(frozen=True)
class StepDone:
    """One step of a stage: an optimizer step, a translated batch, an evaluation section."""

    stage: Stage
    step: int
    total_steps: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)  # finite numbers only
    labels: Mapping[str, str] = field(default_factory=dict)  # e.g. phase, section


@dataclass(frozen=True)
class CheckpointSaved:
    """The trainer wrote a checkpoint that a resumed run continues from."""

    step: int
    path: str
    stage: Stage = "training"


Event = StageStarted | StepDone | CheckpointSaved
EventHook = Callable[[Event], None]


def from_callback(stage: Stage, raw: Mapping[str, Any]) -> Event | None:
    """The event a library callback describes (None for one without a step)."""
    if raw.get("event") == "checkpoint":
        return CheckpointSaved(step=int(raw["step"]), path=str(raw["path"]), stage=stage)
    step = raw.get("step")
    if not isinstance(step, int):
        return None
    total = raw.get("total_steps")
    metrics: dict[str, float] = {}
    labels: dict[str, str] = {}
    for key, value in raw.items():
        if key in _STEP_KEYS:
            continue
        if isinstance(value, str):
            labels[key] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                metrics[key] = float(value)
    return StepDone(
        stage=stage,
        step=step,
        total_steps=total if isinstance(total, int) else None,
        metrics=metrics,
        labels=labels,
    )
