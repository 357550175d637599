"""The policy forward as one module, so DDP and FSDP2 see every step's forward.

`sequence_logprobs` calls the decoder body and the LM head separately; a DDP or FSDP2 wrapper
acts only when its own module's forward runs (DDP readies its gradient reducer there, FSDP2
gathers the root's shards). `SequenceScorer.forward` is that call; `score_sequences` is what
the step and the reference pass call, and routes through the wrapper when given one.
"""

from __future__ import annotations

from typing import Any

import torch

from clo.logprobs import DEFAULT_CHUNK_TOKENS, sequence_logprobs


class SequenceScorer(torch.nn.Module):
    """Wraps a causal LM; forward returns (summed response log-probs, token counts)."""

    def __init__(self, lm: Any) -> None:
        super().__init__()
        self.lm = lm

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_mask: torch.Tensor,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return sequence_logprobs(self.lm, input_ids, attention_mask, response_mask, chunk_tokens)


def is_scorer(model: Any) -> bool:
    """A SequenceScorer, itself (FSDP2 keeps the class) or inside DDP (its `.module`)."""
    return isinstance(model, SequenceScorer) or isinstance(
        getattr(model, "module", None), SequenceScorer
    )


def score_sequences(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`sequence_logprobs` of a plain model, or the forward of a (wrapped) SequenceScorer."""
    if is_scorer(model):
        sums, counts = model(input_ids, attention_mask, response_mask, chunk_tokens)
        return sums, counts
    return sequence_logprobs(model, input_ids, attention_mask, response_mask, chunk_tokens)
