"""Wrapping the policy for N ranks: DDP for attention-only and LoRA, FSDP2 for full.

attention and lora train a few percent of the weights: every rank keeps the whole model,
DDP all-reduces the trainable gradients (frozen weights have none). full trains everything,
so weights, gradients and AdamW's two moments are sharded with FSDP2 (`fully_shard`): each
decoder layer is its own unit (gathered for its forward and backward, then freed), and the
SequenceScorer around the model is the root unit holding what is left (embeddings, final
norm, LM head). A rank then holds 1/N of the parameters, gradients and optimizer state.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from clo.distributed import Ranks
from clo.distributed_scorer import SequenceScorer
from clo.logit_transform import model_transform


def is_sharded(trainable: str) -> bool:
    """Full fine-tuning is sharded (FSDP2); attention-only and LoRA are replicated (DDP)."""
    return trainable == "full"


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a Hugging Face model: modules of its `_no_split_modules` classes
    (the unit HF and Accelerate already shard and offload by)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def wrap_for_ranks(model: Any, trainable: str, ranks: Ranks) -> torch.nn.Module:
    """The module the training steps call: DDP or FSDP2 around a SequenceScorer of `model`.

    FSDP2 changes `model`'s parameters in place into DTensor shards, so the trainable
    parameters are read from `model` after this call.
    """
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    # the logit-transform probe runs the model's own forward, which a root FSDP unit would
    # not see; probing here, on the whole model, caches it for the LM head before sharding
    model_transform(model, decoder, head)
    scorer = SequenceScorer(model)
    if not is_sharded(trainable):
        device_ids = [ranks.device.index] if ranks.device.type == "cuda" else None
        # every trainable weight is used by every step; buffers (rotary tables) never change,
        # so they are synced once, at construction, not before every forward
        return DistributedDataParallel(scorer, device_ids=device_ids, forward_sync_buffers=False)
    layers = decoder_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} names no _no_split_modules to shard by")
    for layer in layers:
        fully_shard(layer)
    fully_shard(scorer)
    return scorer


def accumulation_context(wrapped: torch.nn.Module, last: bool) -> Any:
    """Gradient sync only on a step's last micro-batch (the others accumulate locally)."""
    if isinstance(wrapped, DistributedDataParallel) and not last:
        return wrapped.no_sync()
    if isinstance(wrapped, FSDPModule):
        wrapped.set_requires_gradient_sync(last)
    return contextlib.nullcontext()


def local_bytes(tensor: torch.Tensor) -> int:
    """Bytes this rank holds of `tensor` (its shard, for a DTensor)."""
    local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
    return local.numel() * local.element_size()


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of optimizer state (AdamW: exp_avg, exp_avg_sq, step) held by this rank."""
    return sum(
        local_bytes(v)
        for state in optimizer.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor)
    )


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded weights on CPU, on rank 0 (empty elsewhere). A collective: every rank
    calls it."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
