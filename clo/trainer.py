"""The CLO training loop: encode, score the reference once, then one forward per step.

Each micro-batch holds the four sequences of every example in it (x_en+y_en, x_en+y_tgt,
x_tgt+y_tgt, x_tgt+y_en), padded into one batch; one forward gives all policy log-probs,
and the NLL term comes from the same forward (clo.loss). Methods: clo, dpo (no NLL), sft
(target | english | both) and sft+dpo (SFT over all the data, then DPO over all the pairs
with a fresh optimizer and LR schedule, against the SFT model; phases in clo.plan).
SFT steps forward only the responses they train on and need no reference pass, so SFT costs
what plain SFT costs rather than what CLO costs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clo.activation_policy import choose_checkpointing, enable_checkpointing, largest_micro_batch
from clo.checkpoint import latest_checkpoint, load_checkpoint, restore_rng, save_checkpoint
from clo.config import TrainConfig
from clo.encoding import EncodedSequence, encode_quads, encoding_fingerprint, pad_token_id
from clo.errors import CloError, Stopped
from clo.loss import PAIRS
from clo.optimizers import make_optimizer
from clo.packing import packable, packing_unsupported
from clo.pairs import Quadruple
from clo.plan import global_batch_config, make_plan
from clo.precision import (
    fp32_masters,
    resolve_precision,
    store_frozen_in_bf16,
    trained_parameter_names,
)
from clo.reference import compute_logps, reference_logps
from clo.schedule import lr_at
from clo.step import (
    loss_function,
    loss_step,
    needs_base_reference,
    phase_columns,
    step_metrics,
    step_totals,
)
from clo.trainable import (
    apply_trainable,
    count_parameters,
    disable_dropout,
    trainable_parameters,
)

logger = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
ShouldStop = Callable[[], bool]
PHASE_REF = "__phase_reference_logps"


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


class TrainingRun:
    """State of one training run; `run_step()` does one optimizer step.

    One process by default; clo.distributed_train subclasses the hooks marked below
    (reference pass, wrapping, this rank's share of a micro-batch, metrics, checkpoints).
    """

    world_size = 1
    checkpoint_subdir = "checkpoints"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        quads: Sequence[Quadruple],
        config: TrainConfig,
        workdir: Path,
        reference_cache_dir: Path | None,
    ):
        self.config = config
        self.ckpt_dir = workdir / self.checkpoint_subdir
        seed_everything(config.seed)
        self.encoded, report = encode_quads(
            tokenizer, quads, config.max_length, config.max_prompt_length
        )
        self.truncation = report.as_dict()
        self.pad_id = pad_token_id(tokenizer)
        self.precision = self._precision(next(model.parameters()).device)
        self.packed = self._packing(model)
        if self.precision == "bf16":  # before the reference pass, which must see the same
            store_frozen_in_bf16(model, trained_parameter_names(model, config.trainable))
        # Scored with the untouched base model, before adapters exist or any update happens.
        self.ref: torch.Tensor | None = None
        if needs_base_reference(config.method):
            self.ref = self._base_reference(model, tokenizer, reference_cache_dir)
        self.phase_ref: torch.Tensor | None = None
        self.model = apply_trainable(model, config)
        if self.precision == "bf16":
            fp32_masters([p for _, p in trainable_parameters(self.model)])
        self.activation = choose_checkpointing(
            self.model,
            largest_micro_batch(self.encoded, config.batch_size, self.packed),
            requested=config.gradient_checkpointing,
            budget_mb=config.memory_budget_mb,
            precision=self.precision,
            optimizer=config.optimizer,
            chunk_tokens=config.logprob_chunk_tokens,
        )
        if self.activation.gradient_checkpointing:
            enable_checkpointing(self.model)
        self.runtime: dict[str, Any] = {
            "precision": self.precision,
            "packed_prompts": self.packed,
            "activation_memory": self.activation.as_dict(),
        }
        # what the steps forward: the model itself, or its distributed wrapper (hook)
        self.step_model = self._wrap(self.model)
        self.named_params = trainable_parameters(self.model)
        if not self.named_params:
            raise CloError("no trainable parameters: check the trainable option")
        self.optimizer = self._new_optimizer()
        # an example's micro-batch cost follows its longest sequence (all four are padded)
        lengths = [max(len(seq.input_ids) for seq in ex) for ex in self.encoded]
        plan_config = global_batch_config(config, self.world_size)
        self.plan = make_plan(len(self.encoded), plan_config, lengths)
        self.fingerprint = run_fingerprint(
            plan_config.model_copy(update={"precision": self.precision}), self.encoded
        )
        self.step = 0
        # the phase the optimizer state belongs to; a new phase starts a fresh optimizer
        self.optimizer_phase = self.plan.phase(0, config.method)
        self.dropout_disabled = False
        logger.info(
            "training %s: %s params, %d steps",
            config.trainable,
            count_parameters(self.model),
            self.plan.total_steps,
        )

    def _precision(self, device: torch.device) -> str:
        """The precision this run trains in. "auto" keeps the one its checkpoint trained in:
        a job resumed after an upgrade, or on a host that resolves auto otherwise."""
        cfg = self.config
        chosen = resolve_precision(cfg.precision, device)
        path = latest_checkpoint(self.ckpt_dir) if cfg.precision == "auto" else None
        if path is None:
            return chosen
        try:
            stored = json.loads((path / "state.json").read_text()).get("fingerprint")
        except (OSError, ValueError):
            return chosen
        plan_config = global_batch_config(cfg, self.world_size)
        for candidate in (chosen, "fp32" if chosen == "bf16" else "bf16"):
            update = {"precision": candidate}
            if run_fingerprint(plan_config.model_copy(update=update), self.encoded) == stored:
                return candidate
        return chosen

    def _packing(self, model: Any) -> bool:
        """Whether steps and reference pass forward each prompt once (clo.packing)."""
        if not self.config.pack_prompts:
            return False
        why = packing_unsupported(model)
        if why is None and (self.world_size > 1 or type(self)._wrap is not TrainingRun._wrap):
            # DDP / FSDP2 act only through SequenceScorer's forward, which takes unpacked
            # rows (a wrapped run on one rank too, e.g. an FSDP2 checkpoint resumed alone)
            why = "the distributed wrappers forward unpacked rows"
        if why is None and not packable(self.encoded):
            why = "an example's sequences do not share their prompts"
        if why is not None:
            logger.info("prompts scored unpacked: %s", why)
        return why is None

    # --- hooks (one process: the plain behaviour) ---

    def _base_reference(self, model: Any, tokenizer: Any, cache_dir: Path | None) -> torch.Tensor:
        cfg = self.config
        return reference_logps(
            model,
            tokenizer,
            self.encoded,
            self.pad_id,
            cache_dir=cache_dir,
            batch_size=cfg.batch_size,
            chunk_tokens=cfg.logprob_chunk_tokens,
            precision=self.precision,
            packed=self.packed,
        )

    def _wrap(self, model: Any) -> Any:
        return model

    def _local(self, micro_batch: list[int]) -> list[int]:
        """The examples of a micro-batch this process forwards."""
        return micro_batch

    def _accumulating(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """Context of one micro-batch's forward and backward (`last`: of the step)."""
        return contextlib.nullcontext()

    def _backward(self, loss: torch.Tensor) -> None:
        loss.backward()  # type: ignore[no-untyped-call]  # its share of the step's loss

    def _step_metrics(
        self, parts: list[tuple[dict[str, float], int]], tokens: int
    ) -> tuple[dict[str, float], int]:
        return step_metrics(parts), tokens

    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "data_order": list(self.plan.order),
            "phase": self.optimizer_phase,
        }

    # --- the run ---

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return make_optimizer((p for _, p in self.named_params), self.config)

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

    def _start_phase(self, phase: str) -> None:
        """sft+dpo's switch to DPO: a fresh optimizer, and the SFT model as reference."""
        logger.info("step %d: %s phase starts with a fresh optimizer", self.step, phase)
        self.optimizer = self._new_optimizer()
        self.optimizer_phase = phase
        if phase == "dpo":
            # scored once, by the SFT model as it stands before any DPO update
            self.phase_ref, _ = compute_logps(
                self.step_model,
                self.encoded,
                self.pad_id,
                self.config.batch_size,
                self.config.logprob_chunk_tokens,
                precision=self.precision,
                packed=self.packed,
            )

    def _reference_for(self, phase: str) -> torch.Tensor | None:
        if phase == "sft":
            return None
        return self.phase_ref if self.config.method == "sft+dpo" else self.ref

    def run_step(self) -> dict[str, Any]:
        cfg, plan, step = self.config, self.plan, self.step
        phase = plan.phase(step, cfg.method)
        if phase != self.optimizer_phase:
            self._start_phase(phase)
        if phase != "sft" and cfg.disable_dropout and not self.dropout_disabled:
            # preference training, as TRL runs it: the policy forward is deterministic
            n = disable_dropout(self.model)
            logger.info("step %d: %d dropout rates set to 0 for %s", step, n, phase)
            self.dropout_disabled = True
        ref = self._reference_for(phase)
        first, length = plan.phase_bounds(step, cfg.method)
        lr = lr_at(
            step - first, length, round(cfg.warmup_ratio * length), cfg.learning_rate, cfg.schedule
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        started, tokens, parts = time.perf_counter(), 0, []
        micro_batches = plan.micro_batches(step)
        loss_fn = loss_function(cfg, phase, step_totals(cfg, phase, self.encoded, micro_batches))
        columns = phase_columns(cfg, phase)
        for k, global_ids in enumerate(micro_batches):
            ids = self._local(global_ids)
            seqs = [self.encoded[i][c] for i in ids for c in columns]
            with self._accumulating(last=k == len(micro_batches) - 1):
                out, n_tok = loss_step(
                    self.step_model,
                    seqs,
                    ref[ids] if ref is not None else None,
                    loss_fn,
                    self.pad_id,
                    cfg.logprob_chunk_tokens,
                    width=len(columns),
                    precision=self.precision,
                    packed=self.packed,
                )
                self._backward(out.loss)
            tokens += n_tok
            parts.append((out.metrics(), len(ids)))
        params = [p for _, p in self.named_params]
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm else None
        )
        merged, tokens = self._step_metrics(parts, tokens)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        elapsed = max(time.perf_counter() - started, 1e-9)
        metrics: dict[str, Any] = {
            "stage": "training",
            "step": self.step,
            "total_steps": plan.total_steps,
            **merged,
            "lr": lr,
            "tokens_per_second": tokens / elapsed,
            "step_seconds": elapsed,
            "phase": phase,
            "epoch": self.step * plan.examples_per_step / len(self.encoded),
        }
        if grad_norm is not None:  # a sharded run's norm is a DTensor of the global norm
            full = getattr(grad_norm, "full_tensor", None)
            metrics["grad_norm"] = float(full() if full is not None else grad_norm)
        return metrics


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


@torch.no_grad()
def preference_metrics(
    model: Any,
    tokenizer: Any,
    quads: Sequence[Quadruple],
    *,
    max_length: int = 512,
    max_prompt_length: int = 256,
    reference: torch.Tensor | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Held-out cross-lingual preference per direction (en, tgt).

    accuracy_*: share of examples where the model gives the chosen response (the one in the
    prompt's language) a higher summed log-prob than the rejected one; reward_accuracy_*
    (when `reference` log-probs [N,4] are given): the same for DPO's implicit reward, i.e.
    relative to the reference; token_accuracy_*: the same on mean per-token log-probs, which
    removes the length difference between languages. Also returns the `logps` [N,4] tensor
    for reuse as a reference.
    """
    encoded, _ = encode_quads(tokenizer, quads, max_length, max_prompt_length)
    logps, counts = compute_logps(model, encoded, pad_token_id(tokenizer), batch_size)
    per_token = logps / counts.clamp(min=1)
    out: dict[str, Any] = {"logps": logps}
    for name, (c, r) in PAIRS.items():
        margin = logps[:, c] - logps[:, r]
        out[f"accuracy_{name}"] = float((margin > 0).float().mean())
        out[f"token_accuracy_{name}"] = float((per_token[:, c] > per_token[:, r]).float().mean())
        out[f"margin_{name}"] = float(margin.mean())
        if reference is not None:
            rel = margin - (reference[:, c] - reference[:, r])
            out[f"reward_accuracy_{name}"] = float((rel > 0).float().mean())
    return out
