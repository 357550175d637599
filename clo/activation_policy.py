"""Activation memory by policy: packed rows a few at a time where that is free, gradient
checkpointing only when the run would not fit.

Two levers, the free one first. A packed run (clo.packing) can forward and backpropagate its
micro-batch a few rows at a time (clo.step): the same FLOPs, only those rows' activations
alive. CPU runs forward as few rows at a time as keep 512 tokens in a forward, where the
matmuls still run near their plateau (SmolLM2-135M bf16, one example of two ~758-token rows
per step: one row at a time, 1,579 against 2,000 MB of training memory at 5.1 against
5.7 s per step); GPU runs forward the whole micro-batch; either goes one row at a time
when only that fits the budget. Then the trainer estimates the training memory of what
one forward holds without and with full gradient checkpointing (each decoder layer
recomputed in the backward), and turns checkpointing on only when the first estimate exceeds
the budget: a job that fits keeps the ~30% of step time recomputation costs, one that does
not fit still runs instead of failing out of memory. Checkpointing is selective where the
installed transformers can do it (`every_n_layers`): as few layers recomputed as bring the
estimate under the budget, so a run just over it pays for a few layers, not all. The
choices, the layers checkpointed and the estimates go into the training summary
(`activation_memory`).

The budget is `TrainConfig.memory_budget_mb`, else what the device has: CUDA's free memory,
or the CPU's MemAvailable, plus the weights already loaded, times clo.memory_estimate's
usable share. Totals are clo.memory_estimate.MemoryEstimate's parts:

- weights: the parameters as held (bf16 frozen ones at 2 B) plus, in bf16, the autocast
  working copies of the trained ones (2 B each); master: the fp32 trained parameters of a
  bf16 run; grads: 4 B per trained parameter; optimizer: AdamW 8 B (adamw_8bit 2 B);
- activations: per decoder layer and token, what autograd saves for a Llama-style layer:
  6·hidden + 4·intermediate values in the compute dtype (norm inputs, q/k/v and the
  attention output, the MLP's gate, up, activation and product) plus, in bf16, the two
  norms' fp32 upcasts (2·hidden fp32 values), plus eager attention's score and probability
  rows (2·heads·length); a checkpointed layer keeps its input hidden state only, plus one
  layer's full set while it is recomputed. The LM head adds its fp32 logits chunk (3 buffers of
  chunk × vocab) and the saved [response tokens, hidden] fp32 residual.

Calibrated against the bytes autograd actually saves (saved-tensor hooks) for one packed
example of SmolLM2-135M (2 rows of 758 tokens, attention-only): fp32 1,636 MB saved vs
1,660 MB estimated for the layers, bf16 970 MB vs 1,028 MB (the head's 151 MB logits chunk
comes on top: transient, not saved). It is an estimate: the point is the order of
magnitude that separates fitting from not fitting.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from clo.encoding import EncodedSequence
from clo.memory_estimate import USABLE_SHARE, MemoryEstimate, ModelShape
from clo.packing import SHARED_PROMPT_PAIRS as PAIRS

logger = logging.getLogger(__name__)

MB = 2**20
OPTIMIZER_BYTES = {"adamw": 8, "adamw_8bit": 2}


@dataclass(frozen=True)
class MicroBatchShape:
    """The largest micro-batch a run forwards: rows, their padded width, response tokens."""

    rows: int
    width: int
    response_tokens: int

    @property
    def tokens(self) -> int:
        return self.rows * self.width


def largest_micro_batch(
    encoded: Sequence[Sequence[EncodedSequence]], batch_size: int, packed: bool
) -> MicroBatchShape:
    """An upper bound of a micro-batch of `batch_size` examples: rows x the widest row
    (packed: prompt + both responses, clo.packing), and the most response tokens."""
    if packed:
        width = largest_row(encoded).width
    else:
        width = max(len(seq.input_ids) for ex in encoded for seq in ex)
    responses = max(sum(seq.response_len for seq in ex) for ex in encoded)
    rows = batch_size * (2 if packed else 4)
    return MicroBatchShape(rows=rows, width=width, response_tokens=batch_size * responses)


def largest_row(encoded: Sequence[Sequence[EncodedSequence]]) -> MicroBatchShape:
    """One packed row at its widest: a prompt with both its responses (clo.packing)."""
    rows = [(ex[a], ex[b]) for ex in encoded for a, b in PAIRS]
    width = max(len(first.input_ids) + second.response_len for first, second in rows)
    responses = max(first.response_len + second.response_len for first, second in rows)
    return MicroBatchShape(rows=1, width=width, response_tokens=responses)


@dataclass(frozen=True)
class ActivationChoice:
    """Whether checkpointing runs and over how many layers, how many packed rows go per
    forward, why, and the estimates (bytes) it was chosen from (for the rows per forward
    chosen): off, every layer checkpointed, and what was chosen."""

    reason: str  # requested | fits | over_budget | over_budget_even_checkpointed | no_budget
    budget_bytes: int | None
    estimate_off_bytes: int
    estimate_on_bytes: int
    rows_per_forward: int | None = None  # None: the whole micro-batch at once
    rows_reason: str = "unpacked"  # unpacked | fits | cpu | over_budget
    checkpoint_every: int | None = None  # transformers' every_n_layers; None: off
    layers: int = 0
    estimate_chosen_bytes: int = 0

    @property
    def gradient_checkpointing(self) -> bool:
        return self.checkpoint_every is not None

    @property
    def checkpointed_layers(self) -> int:
        every = self.checkpoint_every
        return 0 if every is None else checkpointed_count(self.layers, every)

    def as_dict(self) -> dict[str, Any]:
        out = {"gradient_checkpointing": self.gradient_checkpointing, **asdict(self)}
        out["checkpointed_layers"] = self.checkpointed_layers
        for key in (
            "budget_bytes",
            "estimate_off_bytes",
            "estimate_on_bytes",
            "estimate_chosen_bytes",
        ):
            value = out.pop(key)
            out[key.replace("_bytes", "_mb")] = None if value is None else round(value / MB, 1)
        return out


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def device_budget(device: torch.device, loaded_bytes: int) -> int | None:
    """Bytes a run on `device` may use in all (None: unknown)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        available: int | None = int(free)
    elif device.type == "cpu":
        available = _meminfo_available()
    else:
        available = None
    if available is None:
        return None
    return int((available + loaded_bytes) * USABLE_SHARE)


def _layer_bytes(config: Any, width: int, act: int) -> int:
    """Bytes one decoder layer saves per token (module doc), `act` bytes per value."""
    hidden = int(config.hidden_size)
    intermediate = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    heads = int(config.num_attention_heads)
    eager = getattr(config, "_attn_implementation", None) == "eager"
    upcasts = 2 * hidden * 4 if act < 4 else 0  # RMSNorm computes in fp32
    scores = 2 * heads * width * 4 if eager else 0
    return (6 * hidden + 4 * intermediate) * act + upcasts + scores


def estimate(
    model: Any,
    shape: MicroBatchShape,
    *,
    precision: str,
    optimizer: str,
    chunk_tokens: int,
    checkpointing: bool,
    every_n_layers: int = 1,
) -> MemoryEstimate:
    """Training memory of one step on `shape` (module doc), as MemoryEstimate parts; with
    `checkpointing`, every `every_n_layers`-th layer is the one recomputed."""
    config = model.config
    layers = decoder_layers(model)
    trained = [p for p in model.parameters() if p.requires_grad]
    n_trained = sum(p.numel() for p in trained)
    held = sum(p.numel() * p.element_size() for p in model.parameters())
    bf16 = precision == "bf16"
    act = 2 if bf16 else 4
    full_layer = shape.tokens * _layer_bytes(config, shape.width, act)
    boundary = shape.tokens * config.hidden_size * act  # a checkpointed layer's input
    body = _body_peak(layers, every_n_layers if checkpointing else None, full_layer, boundary)
    head = 3 * min(chunk_tokens, max(shape.response_tokens, 1)) * config.vocab_size * 4
    head += shape.response_tokens * config.hidden_size * 4
    return MemoryEstimate(
        gpus=1,
        weights=held + (2 * n_trained if bf16 else 0),
        master=0,  # the fp32 trained parameters are the masters: counted in `held`
        optimizer=OPTIMIZER_BYTES.get(optimizer, 8) * n_trained,
        grads=4 * n_trained,
        in_flight=0,
        activations=body + head,
    )


# Fewest tokens one forward of a CPU run keeps (rows one at a time only where a row is this
# long): bf16 [M, 576] x [576, 1536 | 576] matmuls on the 2-core VM ran at 190, 223, 316,
# 334, 375 and 360 GFLOP/s for M = 128, 256, 384, 512, 768 and 2,048; 512 is the first at
# ~90% of the plateau. Shorter forwards slowed steps: SmolLM2, 8 rows of ~170 tokens one at
# a time took 15-25% longer per step than all eight at once, 4 at a time about the same.
MIN_CPU_FORWARD_TOKENS = 512


def decoder_layers(model: Any) -> int:
    config = model.config
    return ModelShape.from_hf_config(config).layers if hasattr(config, "vocab_size") else 1


def checkpointed_count(layers: int, every_n_layers: int) -> int:
    """Layers transformers checkpoints with `every_n_layers`: indices 0, n, 2n, ..."""
    return -(-layers // every_n_layers)


def selective_supported(model: Any) -> bool:
    """Whether the installed transformers checkpoints every n-th layer only."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    return enable is not None and "every_n_layers" in inspect.signature(enable).parameters


def _body_peak(layers: int, every: int | None, full_layer: int, boundary: int) -> int:
    """The decoder's activation peak when layers 0, every, 2·every, ... are checkpointed
    (None: none). At the end of the forward, every other layer holds its full set and each
    checkpointed one its input. Recomputing checkpointed layer i, in the backward, the layers
    after i are freed already: the layers before it hold theirs, and i holds its input and,
    for the moment, its full set. The peak is the larger of the two."""
    if every is None:
        return layers * full_layer
    checkpointed = range(0, layers, every)
    peak = (layers - len(checkpointed)) * full_layer + len(checkpointed) * boundary
    for before, index in enumerate(checkpointed):  # `before` checkpointed layers precede it
        held = (index - before) * full_layer + (before + 1) * boundary + full_layer
        peak = max(peak, held)
    return peak


def _fewest_checkpointed(
    model: Any, budget: int, shape: MicroBatchShape, kw: dict[str, Any]
) -> int:
    """The largest every_n_layers (fewest layers recomputed) that fits `budget`; 1 (every
    layer) when none does or only full checkpointing is available."""
    if not selective_supported(model):
        return 1
    layers = decoder_layers(model)
    for every in range(layers, 1, -1):  # ceil(layers / every) grows as every shrinks
        held = estimate(model, shape, checkpointing=True, every_n_layers=every, **kw)
        if held.fits(budget, usable=1.0):
            return every
    return 1


def _group(shape: MicroBatchShape, row: MicroBatchShape, rows: int | None) -> MicroBatchShape:
    """What one forward holds: the micro-batch, or `rows` of its widest rows."""
    if rows is None:
        return shape
    responses = min(rows * row.response_tokens, shape.response_tokens)
    return MicroBatchShape(rows=rows, width=row.width, response_tokens=responses)


def _rows_per_forward(
    model: Any,
    shape: MicroBatchShape,
    row: MicroBatchShape | None,
    budget: int | None,
    kw: dict[str, Any],
) -> tuple[int | None, str]:
    """How many packed rows one forward takes (None: the micro-batch), and why."""
    if row is None:
        return None, "unpacked"
    rows, why = None, "fits"
    if next(model.parameters()).device.type == "cpu":
        per_forward = -(-MIN_CPU_FORWARD_TOKENS // max(row.width, 1))
        if per_forward < shape.rows:
            rows, why = per_forward, "cpu"
    held = estimate(model, _group(shape, row, rows), checkpointing=False, **kw)
    if rows != 1 and budget is not None and not held.fits(budget, usable=1.0):
        return 1, "over_budget"
    return rows, why


def choose_checkpointing(
    model: Any,
    shape: MicroBatchShape,
    *,
    requested: bool,
    budget_mb: int | None,
    precision: str,
    optimizer: str,
    chunk_tokens: int,
    row: MicroBatchShape | None = None,
) -> ActivationChoice:
    """Rows per forward, then checkpointing: on when requested, or when the run would not
    fit its budget without.

    `row`: a packed run's widest row (largest_row). Its rows can go through the forward and
    backward a few at a time (clo.step): the same FLOPs and no recompute, only those rows'
    activations alive instead of the micro-batch's. A CPU run forwards as few rows at a time
    as keep MIN_CPU_FORWARD_TOKENS in a forward; a GPU run, whose matmuls want the whole
    micro-batch, all of them. Either goes one row at a time when that is what fits the
    budget. Unpacked runs forward their micro-batch at once.
    """
    kw: dict[str, Any] = dict(precision=precision, optimizer=optimizer, chunk_tokens=chunk_tokens)
    device = next(model.parameters()).device
    loaded = sum(p.numel() * p.element_size() for p in model.parameters())
    budget = budget_mb * MB if budget_mb is not None else device_budget(device, loaded)
    rows, rows_reason = _rows_per_forward(model, shape, row, budget, kw)
    forwarded = shape if row is None else _group(shape, row, rows)
    off = estimate(model, forwarded, checkpointing=False, **kw)
    on = estimate(model, forwarded, checkpointing=True, **kw)
    every: int | None = None
    if requested:
        reason, every = "requested", 1
    elif budget is None:
        reason = "no_budget"
    elif off.fits(budget, usable=1.0):
        reason = "fits"
    elif on.fits(budget, usable=1.0):
        reason, every = "over_budget", _fewest_checkpointed(model, budget, forwarded, kw)
    else:
        reason, every = "over_budget_even_checkpointed", 1
    layers = decoder_layers(model)
    chosen = (
        off
        if every is None
        else estimate(model, forwarded, checkpointing=True, every_n_layers=every, **kw)
    )
    choice = ActivationChoice(
        reason=reason,
        budget_bytes=budget,
        estimate_off_bytes=off.total,
        estimate_on_bytes=on.total,
        rows_per_forward=rows,
        rows_reason=rows_reason,
        checkpoint_every=every,
        layers=layers,
        estimate_chosen_bytes=chosen.total,
    )
    if reason.startswith("over_budget"):
        logger.warning(
            "estimated %.0f MB without gradient checkpointing, budget %.0f MB: checkpointing "
            "%d of %d layers (estimated %.0f MB)",
            off.total / MB,
            budget / MB if budget else 0,
            choice.checkpointed_layers,
            layers,
            chosen.total / MB,
        )
    return choice


def enable_checkpointing(model: Any, every_n_layers: int = 1) -> None:
    """Gradient checkpointing of every `every_n_layers`-th decoder layer (1: all of them),
    non-reentrant: works with frozen inputs (attention-only) and LoRA without hacks."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if every_n_layers != 1:  # chosen only where selective_supported
        assert enable is not None
        enable({"use_reentrant": False}, every_n_layers=every_n_layers)
    elif enable is not None:
        enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
