"""SDPA over a packed row's live blocks only: two attention calls per row instead of one
masked call over the whole row.

A packed row (clo.packing) is `prompt P | first response A | second response B`; A sees P and
itself causally, B sees P and itself causally, never A. Given as one 4-D boolean mask, SDPA's
kernels (CPU flash, CUDA memory-efficient) compute every block of the W x W score matrix,
the A-by-B and B-by-A blocks included, and a masked call does not skip the blocks above
the diagonal as a causal one does. Split by the layout instead:

- P+A attends to itself causally: one `is_causal` call over the first p+a tokens;
- B's queries attend to P's and B's keys: one call with a (b, p+b) mask, causal aligned to
  the bottom right (B's token i sees all of P and B's first i+1 tokens).

The outputs are the same function of q, k, v (tests/clo/test_packed_attention.py compares
them with the masked call); padding past a row's end gets zeros, which no loss reads.
Measured on SmolLM2-135M's shape (9 query / 3 key heads, d 64, bf16, CPU, a row of
p 101 / a 246 / b 411), forward + backward took ~31 ms against ~52 ms for the masked call.

Routing: transformers picks a layer's attention function by `config._attn_implementation`,
at every forward, including the forwards gradient checkpointing repeats in the backward.
`routed(model)` therefore switches an SDPA model to this function around a whole forward
*and* its backward; the row layout travels as the `packed_layout` keyword that transformers
hands through to the attention function. Without a layout (any other forward while routed)
it is transformers' own SDPA.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

PACKED_SDPA = "clo_packed_sdpa"
RowLayout = tuple[int, int, int]  # prompt, first response, second response lengths


def _heads_for(query: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
    """Key/value heads repeated to the query's (grouped-query attention)."""
    groups = query.shape[1] // kv.shape[1]
    return kv if groups == 1 else kv.repeat_interleave(groups, dim=1)


def _row_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: RowLayout,
    width: int,
    dropout: float,
    scale: float | None,
) -> torch.Tensor:
    """One row's output [1, heads, width, d]: P+A causal, B over P and B, zeros after."""
    p, a, b = layout
    n1 = p + a
    pieces = [
        F.scaled_dot_product_attention(
            q[:, :, :n1], k[:, :, :n1], v[:, :, :n1], dropout_p=dropout, scale=scale, is_causal=True
        )
    ]
    if b:
        keys = torch.cat([k[:, :, :p], k[:, :, n1 : n1 + b]], dim=2)
        values = torch.cat([v[:, :, :p], v[:, :, n1 : n1 + b]], dim=2)
        sees = torch.ones(b, p + b, dtype=torch.bool, device=q.device).tril_(diagonal=p)
        pieces.append(
            F.scaled_dot_product_attention(
                q[:, :, n1 : n1 + b], keys, values, attn_mask=sees, dropout_p=dropout, scale=scale
            )
        )
    if width > n1 + b:
        pieces.append(q.new_zeros(1, q.shape[1], width - n1 - b, v.shape[-1]))
    return torch.cat(pieces, dim=2)


def packed_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    packed_layout: Sequence[RowLayout] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: [B, heads, W, d] in, [B, W, heads, d] out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if packed_layout is None:
        out: tuple[torch.Tensor, None] = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, **kwargs
        )
        return out
    key, value = _heads_for(query, key), _heads_for(query, value)
    width = query.shape[2]
    rows = [
        _row_attention(
            query[r : r + 1], key[r : r + 1], value[r : r + 1], layout, width, dropout, scaling
        )
        for r, layout in enumerate(packed_layout)
    ]
    return torch.cat(rows).transpose(1, 2).contiguous(), None


def register() -> None:
    """Make PACKED_SDPA a known attention implementation (idempotent). Its mask function is
    SDPA's, for any forward that builds a mask while routed; packed forwards pass theirs."""
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_forward)
    AttentionMaskInterface.register(PACKED_SDPA, sdpa_mask)


@contextlib.contextmanager
def routed(model: Any) -> Iterator[bool]:
    """Within: an SDPA model's layers attend through packed_sdpa_forward; yields whether it
    was routed (eager models are not: they take the 4-D mask as it is)."""
    config = model.config
    if config._attn_implementation != "sdpa":
        yield config._attn_implementation == PACKED_SDPA
        return
    register()
    config._attn_implementation = PACKED_SDPA
    try:
        yield True
    finally:
        config._attn_implementation = "sdpa"
