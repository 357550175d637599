"""The CLO training loop: encode, score the reference once, then one forward per step.

Each micro-batch holds the four sequences of every example in it (x_en+y_en, x_en+y_tgt,
x_tgt+y_tgt, x_tgt+y_en), padded into one batch; one forward gives all policy log-probs,
and the NLL term comes from the same forward (clo.loss). Methods: clo, dpo (no NLL), sft
(target | english | both) and sft+dpo (SFT over all the data, then DPO over all the pairs
with a fresh optimizer and LR schedule, against the SFT model; phases in clo.plan).
SFT steps forward only the responses they train on and need no reference pass, so SFT costs
what plain SFT costs rather than what CLO costs.

Here: `train` and the loop over steps (`run_training`); a run's state and its step are
clo.training_run, checkpoints and the resume fingerprint clo.trainer_resume, held-out
preference clo.preference_metrics. Their public names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clo.config import TrainConfig
from clo.errors import CloError, Stopped
from clo.pairs import Quadruple
from clo.plan import make_plan
from clo.preference_metrics import preference_metrics
from clo.trainer_resume import ADDED_FIELDS, PHASE_REF, UNFINGERPRINTED, run_fingerprint
from clo.training_run import TrainingRun, seed_everything

__all__ = [
    "ADDED_FIELDS",
    "PHASE_REF",
    "UNFINGERPRINTED",
    "Progress",
    "ShouldStop",
    "TrainResult",
    "TrainingRun",
    "make_plan",
    "preference_metrics",
    "run_fingerprint",
    "run_training",
    "seed_everything",
    "train",
]

Progress = Callable[[dict[str, Any]], None]
ShouldStop = Callable[[], bool]


@dataclass
class TrainResult:
    """The trained model (PEFT-wrapped for lora), steps run, final metrics, truncation report."""

    model: Any
    steps: int
    metrics: dict[str, float]
    truncation: dict[str, int]
    history: list[dict[str, Any]] = field(default_factory=list)
    # how it ran: precision, packed prompts, the activation-memory choice (TrainingRun.runtime)
    runtime: dict[str, Any] = field(default_factory=dict)


def train(
    model: Any,
    tokenizer: Any,
    train_quads: Sequence[Quadruple],
    config: TrainConfig,
    workdir: Path,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    reference_cache_dir: Path | None = None,
) -> TrainResult:
    """Train `model` on the quadruples; resumes from workdir/checkpoints when one exists.

    `progress(metrics)` is called after every optimizer step; `should_stop()` is checked
    before every step, and when it returns True a checkpoint is written and Stopped raised.
    """
    if not train_quads:
        raise CloError("no training examples: train_quads is empty")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run = TrainingRun(model, tokenizer, train_quads, config, workdir, reference_cache_dir)
    return run_training(run, progress, should_stop)


def run_training(
    run: TrainingRun, progress: Progress | None, should_stop: ShouldStop | None
) -> TrainResult:
    """Resume `run` from its checkpoints and train it to the end (see train)."""
    config = run.config
    run.resume()
    run.model.train()
    history: list[dict[str, Any]] = []
    while run.step < run.plan.total_steps:
        if should_stop is not None and should_stop():
            path = run.checkpoint()
            raise Stopped(
                f"stopped at step {run.step} of {run.plan.total_steps}; checkpoint {path}"
            )
        metrics = run.run_step()
        history.append(metrics)
        if progress is not None:
            progress(metrics)
        if run.step % config.checkpoint_every == 0 and run.step < run.plan.total_steps:
            path = run.checkpoint()
            if progress is not None:
                progress(
                    {
                        "event": "checkpoint",
                        "step": run.step,
                        "path": str(path.parent),
                        "message": f"checkpoint at step {run.step}",
                    }
                )
    run.model.eval()
    final = {
        k: v for k, v in (history[-1] if history else {}).items() if isinstance(v, int | float)
    }
    final["train_steps"] = run.plan.total_steps
    if history:
        final["mean_step_seconds"] = sum(m["step_seconds"] for m in history) / len(history)
    return TrainResult(
        model=run.model,
        steps=run.plan.total_steps,
        metrics=final,
        truncation=run.truncation,
        history=history,
        runtime=run.runtime,
    )
