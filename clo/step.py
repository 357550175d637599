"""One optimizer step's pieces: what a phase forwards, its loss with the step's totals
bound, one micro-batch forward, and the step's metrics from those of its micro-batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from clo.packed_attention import routed
from clo.packing import PackedRow, pack_examples, packed_logprobs
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


def _plain_backward(loss: torch.Tensor) -> None:
    loss.backward()  # type: ignore[no-untyped-call]


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
    backward: Callable[[torch.Tensor], None] = _plain_backward,
    rows_per_forward: int | None = None,
) -> tuple[LossOutput, int]:
    """Forward and backward (`backward(loss)`) over the `width`·B sequences of B examples;
    returns the loss (detached) and tokens.

    `precision`: the run's (clo.precision; None: bf16 autocast on CUDA only). `packed`:
    each prompt once, with both its responses in one row (clo.packing; whole quadruples
    only), forwarded and backpropagated `rows_per_forward` rows at a time (None: all).
    Tokens are the unpacked sequences' either way, so tokens/s stays comparable.
    """
    device = next(model.parameters()).device
    tokens = sum(len(s.input_ids) for s in sequences)
    ref = ref.to(device) if ref is not None else None
    if packed and width == len(SEQUENCE_NAMES):
        rows = pack_examples(sequences)
        with routed(model):  # over the backward too: checkpointing re-runs forwards there
            group = rows_per_forward or len(rows)
            out = _packed_row_groups(
                model, rows, ref, loss_fn, pad_id, chunk_tokens, precision, backward, group
            )
        return out, tokens
    with autocast_context(device, precision, model):
        batch = collate(sequences, pad_id).to(device)
        logps, counts = score_sequences(
            model, batch.input_ids, batch.attention_mask, batch.response_mask, chunk_tokens
        )
    out = loss_fn(logps.view(-1, width), ref, counts.view(-1, width))
    backward(out.loss)
    return _detached(out), tokens


def _packed_row_groups(
    model: Any,
    rows: list[PackedRow],
    ref: torch.Tensor | None,
    loss_fn: LossFn,
    pad_id: int,
    chunk_tokens: int,
    precision: str | None,
    backward: Callable[[torch.Tensor], None],
    group: int,
) -> LossOutput:
    """Forward and backward `group` packed rows at a time, so only one group's activations
    are alive at once.

    Exact because a row holds one prompt with both its responses, i.e. one whole preference
    pair (clo.loss.PAIRS are clo.packing.SHARED_PROMPT_PAIRS), and the NLL is a sum over
    sequences: the loss is a sum of per-row terms, so its gradient through one group's
    log-probs, with every other row's held constant, is that group's share.
    """
    device = next(model.parameters()).device
    counts = torch.tensor([n for r in rows for n in (r.first_len, r.second_len)], device=device)
    logps = torch.zeros(2 * len(rows), dtype=torch.float32, device=device)
    for start in range(0, len(rows), group):
        part = rows[start : start + group]
        with autocast_context(device, precision, model):
            lp, _ = packed_logprobs(model, part, chunk_tokens, pad_id)
        where = torch.arange(2 * start, 2 * (start + len(part)), device=device)
        # the other rows' log-probs as constants (not yet scored: zeros, any value would do)
        backward(loss_fn(logps.index_put((where,), lp).view(-1, 4), ref, counts.view(-1, 4)).loss)
        logps[where] = lp.detach()
    return loss_fn(logps.view(-1, 4), ref, counts.view(-1, 4))


def _detached(out: LossOutput) -> LossOutput:
    out.loss = out.loss.detach()
    return out


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
