"""The CLO training loop: encode, score the reference once, then one forward per step.

Each micro-batch holds the four sequences of every example in it (x_en+y_en, x_en+y_tgt,
x_tgt+y_tgt, x_tgt+y_en), padded into one batch; one forward gives all policy log-probs,
and the NLL term comes from the same forward (clo.loss). Methods: clo, dpo (no NLL), sft
(target | english | both) and sft+dpo (an SFT phase, then DPO against the SFT model).
SFT steps forward only the responses they train on and need no reference pass, so SFT costs
what plain SFT costs rather than what CLO costs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clo.checkpoint import latest_checkpoint, load_checkpoint, restore_rng, save_checkpoint
from clo.config import TrainConfig
from clo.encoding import (
    SEQUENCE_NAMES,
    EncodedSequence,
    collate,
    encode_quads,
    encoding_fingerprint,
    pad_token_id,
)
from clo.errors import CloError, Stopped
from clo.logprobs import sequence_logprobs
from clo.loss import PAIRS, SFT_COLUMNS, LossFn, LossOutput, clo_loss, sft_loss
from clo.pairs import Quadruple
from clo.reference import autocast_context, compute_logps, reference_logps
from clo.schedule import lr_at
from clo.trainable import apply_trainable, count_parameters, trainable_parameters

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


@dataclass(frozen=True)
class Plan:
    """Step count, data order and phases of a run; a pure function of config and data size."""

    total_steps: int
    examples_per_step: int
    micro_batch: int
    order: tuple[int, ...]
    sft_steps: int  # sft+dpo: steps of the SFT phase; 0 otherwise

    def micro_batches(self, step: int) -> list[list[int]]:
        start = step * self.examples_per_step
        ids = self.order[start : start + self.examples_per_step]
        return [list(ids[i : i + self.micro_batch]) for i in range(0, len(ids), self.micro_batch)]

    def phase(self, step: int, method: str) -> str:
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


# Examples sorted together when grouping by length; HF's LengthGroupedSampler uses 50 too.
LENGTH_GROUP_BATCHES = 50


def make_plan(n_examples: int, config: TrainConfig, lengths: Sequence[int] | None = None) -> Plan:
    """Seeded data order: a fresh permutation per epoch, grouped by `lengths` when asked."""
    micro = min(config.batch_size, n_examples)
    per_step = micro * config.grad_accum
    total = config.max_steps or max(1, math.ceil(config.epochs * n_examples / per_step))
    needed = total * per_step
    gen = torch.Generator().manual_seed(config.seed)
    grouped = config.group_by_length and lengths is not None and micro > 1
    order: list[int] = []
    while len(order) < needed:  # a fresh permutation per epoch
        epoch = torch.randperm(n_examples, generator=gen).tolist()
        if grouped:
            assert lengths is not None
            # the first `fill` examples complete the previous epoch's last micro-batch
            fill = -len(order) % micro
            epoch = epoch[:fill] + group_by_length(epoch[fill:], lengths, micro, gen)
        order.extend(epoch)
    sft_steps = 0
    if config.method == "sft+dpo":
        sft_steps = min(total - 1, max(1, round(total * config.sft_steps_fraction)))
        if total < 2:
            raise CloError("method sft+dpo needs at least 2 steps (raise max_steps or epochs)")
    return Plan(total, per_step, micro, tuple(order[:needed]), sft_steps)


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


def loss_function(config: TrainConfig, phase: str) -> LossFn:
    """The pure loss of one phase, with the config's hyper-parameters bound."""
    if phase == "sft":
        return sft_loss
    lam = config.lambda_nll if phase == "clo" else 0.0
    return partial(
        clo_loss,
        lam=lam,
        beta=config.beta,
        loss_type=config.preference_loss,
        english_nll=config.english_nll and phase == "clo",
    )


ALL_COLUMNS = tuple(range(len(SEQUENCE_NAMES)))


def phase_columns(config: TrainConfig, phase: str) -> tuple[int, ...]:
    """The sequences of each quadruple a step of `phase` forwards (SFT: only the trained ones)."""
    return SFT_COLUMNS[config.sft_variant] if phase == "sft" else ALL_COLUMNS


def needs_base_reference(method: str) -> bool:
    """Only clo and dpo compare against the base model; sft+dpo's DPO uses the SFT model."""
    return method in ("clo", "dpo")


def loss_step(
    model: Any,
    sequences: list[EncodedSequence],
    ref: torch.Tensor | None,
    loss_fn: LossFn,
    pad_id: int,
    chunk_tokens: int,
    width: int = len(SEQUENCE_NAMES),
) -> tuple[LossOutput, int]:
    """One forward over the `width`·B sequences of B examples; returns the loss and tokens."""
    device = next(model.parameters()).device
    batch = collate(sequences, pad_id).to(device)
    with autocast_context(device):
        logps, tokens = sequence_logprobs(
            model, batch.input_ids, batch.attention_mask, batch.response_mask, chunk_tokens
        )
    ref = ref.to(device) if ref is not None else None
    return loss_fn(logps.view(-1, width), ref, tokens.view(-1, width)), batch.num_tokens


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_fingerprint(config: TrainConfig, encoded: Sequence[tuple[EncodedSequence, ...]]) -> str:
    """Identifies a run so a checkpoint is only resumed by the same config and data."""
    # Settings that do not change the maths may differ on resume (e.g. a retry saving memory).
    # group_by_length only orders the data, and a resumed run keeps the order its checkpoint
    # recorded; leaving it out also lets checkpoints written before it existed resume.
    cfg = config.model_dump(
        mode="json",
        exclude={
            "checkpoint_every",
            "gradient_checkpointing",
            "logprob_chunk_tokens",
            "group_by_length",
        },
    )
    blob = json.dumps(cfg, sort_keys=True) + encoding_fingerprint(encoded)
    return hashlib.sha256(blob.encode()).hexdigest()


def _mean_metrics(items: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(d[k] for d in items) / len(items) for k in items[0]}


class _Run:
    """State of one training run; `step()` does one optimizer step."""

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
        self.ckpt_dir = workdir / "checkpoints"
        seed_everything(config.seed)
        self.encoded, report = encode_quads(
            tokenizer, quads, config.max_length, config.max_prompt_length
        )
        self.truncation = report.as_dict()
        self.pad_id = pad_token_id(tokenizer)
        # Scored with the untouched base model, before adapters exist or any update happens.
        self.ref: torch.Tensor | None = None
        if needs_base_reference(config.method):
            self.ref = reference_logps(
                model,
                tokenizer,
                self.encoded,
                self.pad_id,
                cache_dir=reference_cache_dir,
                batch_size=config.batch_size,
                chunk_tokens=config.logprob_chunk_tokens,
            )
        self.phase_ref: torch.Tensor | None = None
        self.model = apply_trainable(model, config)
        if config.gradient_checkpointing:
            # non-reentrant: works with frozen inputs (attention-only) and LoRA without hacks
            enable = getattr(self.model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable({"use_reentrant": False})
            else:
                self.model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
        self.named_params = trainable_parameters(self.model)
        if not self.named_params:
            raise CloError("no trainable parameters: check the trainable option")
        self.optimizer = torch.optim.AdamW(
            [p for _, p in self.named_params],
            lr=config.learning_rate,
            betas=config.adam_betas,
            weight_decay=config.weight_decay,
        )
        # an example's micro-batch cost follows its longest sequence (all four are padded)
        lengths = [max(len(seq.input_ids) for seq in ex) for ex in self.encoded]
        self.plan = make_plan(len(self.encoded), config, lengths)
        self.fingerprint = run_fingerprint(config, self.encoded)
        self.step = 0
        logger.info(
            "training %s: %s params, %d steps",
            config.trainable,
            count_parameters(self.model),
            self.plan.total_steps,
        )

    def resume(self) -> None:
        path = latest_checkpoint(self.ckpt_dir)
        if path is None:
            return
        ckpt = load_checkpoint(path)
        if ckpt.state.get("fingerprint") != self.fingerprint:
            raise CloError(
                f"checkpoint {path} belongs to a different config or data set; "
                "use a fresh workdir or the original config"
            )
        with torch.no_grad():
            for name, p in self.named_params:
                p.copy_(ckpt.tensors[name])
        self.phase_ref = ckpt.tensors.get(PHASE_REF)
        order = ckpt.state.get("data_order")
        if order is not None and sorted(order) == sorted(self.plan.order):
            # the order the run started with, whatever this code's grouping would pick now
            self.plan = dataclasses.replace(self.plan, order=tuple(order))
        self.optimizer.load_state_dict(ckpt.optimizer)
        restore_rng(ckpt.state["rng"])
        self.step = ckpt.step
        logger.info("resumed from %s at step %d", path, self.step)

    def checkpoint(self) -> Path:
        tensors: dict[str, torch.Tensor] = {name: p.detach() for name, p in self.named_params}
        if self.phase_ref is not None:
            tensors[PHASE_REF] = self.phase_ref
        return save_checkpoint(
            self.ckpt_dir,
            self.step,
            tensors,
            self.optimizer.state_dict(),
            {"fingerprint": self.fingerprint, "data_order": list(self.plan.order)},
        )

    def _reference_for(self, phase: str) -> torch.Tensor | None:
        if phase == "sft":
            return None
        if self.config.method != "sft+dpo":
            return self.ref
        if self.phase_ref is None:  # DPO after SFT uses the SFT model as its reference
            self.phase_ref, _ = compute_logps(
                self.model,
                self.encoded,
                self.pad_id,
                self.config.batch_size,
                self.config.logprob_chunk_tokens,
            )
        return self.phase_ref

    def run_step(self) -> dict[str, Any]:
        cfg, plan, step = self.config, self.plan, self.step
        phase = plan.phase(step, cfg.method)
        ref = self._reference_for(phase)
        first, length = plan.phase_bounds(step, cfg.method)
        lr = lr_at(
            step - first, length, round(cfg.warmup_ratio * length), cfg.learning_rate, cfg.schedule
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_fn = loss_function(cfg, phase)
        started, tokens, parts = time.perf_counter(), 0, []
        micro_batches = plan.micro_batches(step)
        columns = phase_columns(cfg, phase)
        for ids in micro_batches:
            seqs = [self.encoded[i][c] for i in ids for c in columns]
            out, n_tok = loss_step(
                self.model,
                seqs,
                ref[ids] if ref is not None else None,
                loss_fn,
                self.pad_id,
                cfg.logprob_chunk_tokens,
                width=len(columns),
            )
            (out.loss / len(micro_batches)).backward()
            tokens += n_tok
            parts.append(out.metrics())
        params = [p for _, p in self.named_params]
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm else None
        )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        elapsed = max(time.perf_counter() - started, 1e-9)
        metrics: dict[str, Any] = {
            "stage": "training",
            "step": self.step,
            "total_steps": plan.total_steps,
            **_mean_metrics(parts),
            "lr": lr,
            "tokens_per_second": tokens / elapsed,
            "step_seconds": elapsed,
            "phase": phase,
            "epoch": self.step * plan.examples_per_step / len(self.encoded),
        }
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
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
    run = _Run(model, tokenizer, train_quads, config, workdir, reference_cache_dir)
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
