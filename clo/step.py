"""One optimizer step's pieces: what a phase forwards, its loss with the step's totals
bound, one micro-batch forward, and the step's metrics from those of its micro-batches."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch

from clo.config import TrainConfig
from clo.distributed_scorer import score_sequences
from clo.encoding import SEQUENCE_NAMES, EncodedSequence, collate
from clo.loss import (
    SFT_COLUMNS,
    LossFn,
    LossOutput,
    StepTotals,
    clo_loss,
    nll_columns,
    sft_loss,
)
from clo.packing import pack_examples, packed_logprobs
from clo.reference import autocast_context


def loss_function(config: TrainConfig, phase: str, totals: StepTotals | None = None) -> LossFn:
    """The pure loss of one phase, with the config's hyper-parameters and step totals bound."""
    if phase == "sft":
        return partial(sft_loss, totals=totals)
    lam = config.lambda_nll if phase == "clo" else 0.0
    return partial(
        clo_loss,
        totals=totals,
        lam=lam,
        beta=config.beta,
        loss_type=config.preference_loss,
        english_nll=config.english_nll and phase == "clo",
    )


ALL_COLUMNS = tuple(range(len(SEQUENCE_NAMES)))


def phase_columns(config: TrainConfig, phase: str) -> tuple[int, ...]:
    """The sequences of each quadruple a step of `phase` forwards (SFT: only the trained ones)."""
    return SFT_COLUMNS[config.sft_variant] if phase == "sft" else ALL_COLUMNS


def step_totals(
    config: TrainConfig,
    phase: str,
    encoded: Sequence[tuple[EncodedSequence, ...]],
    micro_batches: list[list[int]],
) -> StepTotals:
    """The NLL's response tokens and the examples of one step, over all its micro-batches.

    A sequence's response tokens are the ones its summed log-prob counts (clo.logprobs).
    """
    ids = [i for batch in micro_batches for i in batch]
    if phase == "sft":  # every forwarded response is trained on
        columns = phase_columns(config, phase)
    else:
        columns = nll_columns(config.english_nll and phase == "clo")
    tokens = sum(encoded[i][c].response_len for i in ids for c in columns)
    return StepTotals(nll_tokens=tokens, examples=len(ids))


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
    precision: str | None = None,
    packed: bool = False,
) -> tuple[LossOutput, int]:
    """One forward over the `width`·B sequences of B examples; returns the loss and tokens.

    `precision`: the run's (clo.precision; None: bf16 autocast on CUDA only). `packed`:
    each prompt once, with both its responses in one row (clo.packing; whole quadruples
    only). Tokens are the unpacked sequences' either way, so tokens/s stays comparable.
    """
    device = next(model.parameters()).device
    tokens = sum(len(s.input_ids) for s in sequences)
    with autocast_context(device, precision, model):
        if packed and width == len(SEQUENCE_NAMES):
            logps, counts = packed_logprobs(model, pack_examples(sequences), chunk_tokens, pad_id)
        else:
            batch = collate(sequences, pad_id).to(device)
            logps, counts = score_sequences(
                model, batch.input_ids, batch.attention_mask, batch.response_mask, chunk_tokens
            )
    ref = ref.to(device) if ref is not None else None
    return loss_fn(logps.view(-1, width), ref, counts.view(-1, width)), tokens


# Per-micro-batch metrics that are shares of the step's value (see clo.loss.StepTotals)
ADDITIVE_METRICS = ("loss", "nll", "cl_loss")


def step_metrics(parts: list[tuple[dict[str, float], int]]) -> dict[str, float]:
    """The step's metrics: shares added up, the rest averaged over the step's examples."""
    examples = sum(n for _, n in parts)
    return {
        k: sum(m[k] for m, _ in parts)
        if k in ADDITIVE_METRICS
        else sum(m[k] * n for m, n in parts) / examples
        for k in parts[0][0]
    }
