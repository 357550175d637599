"""One training run's state, and its optimizer step (the loop is clo.trainer).

Built once per run: encode the quadruples, choose precision and packing, score the base
reference when the method needs it, apply the trainable option, choose gradient
checkpointing, plan the data order. `run_step()` then does one optimizer step, switching
sft+dpo from its SFT phase to DPO (a fresh optimizer, the SFT model as reference) when the
plan says so. Checkpoint and resume: clo.trainer_resume.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clo.activation_policy import (
    choose_checkpointing,
    enable_checkpointing,
    largest_micro_batch,
    largest_row,
)
from clo.config import TrainConfig
from clo.encoding import encode_quads, pad_token_id
from clo.errors import CloError
from clo.optimizers import make_optimizer
from clo.packing import unpacked_reason
from clo.pairs import Quadruple
from clo.plan import global_batch_config, make_plan
from clo.precision import fp32_masters, store_frozen_in_bf16, trained_parameter_names
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
from clo.trainer_resume import CheckpointedRun, checkpoint_precision, run_fingerprint

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainingRun(CheckpointedRun):
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
        self.precision = checkpoint_precision(
            config, self.encoded, self.ckpt_dir, self.world_size, next(model.parameters()).device
        )
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
            row=largest_row(self.encoded) if self.packed else None,
        )
        if self.activation.checkpoint_every is not None:
            enable_checkpointing(self.model, self.activation.checkpoint_every)
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

    def _packing(self, model: Any) -> bool:
        """Whether steps and reference pass forward each prompt once (clo.packing)."""
        if not self.config.pack_prompts:
            return False
        # a wrapped run on one rank too, e.g. an FSDP2 checkpoint resumed alone
        wrapped = self.world_size > 1 or type(self)._wrap is not TrainingRun._wrap
        why = unpacked_reason(model, self.encoded, wrapped)
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

    # --- the run ---

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return make_optimizer((p for _, p in self.named_params), self.config)

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
                    backward=self._backward,
                    rows_per_forward=self.activation.rows_per_forward,
                )
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
