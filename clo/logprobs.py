"""Per-sequence log-probs of response tokens, through the LM head in chunks.

The decoder body runs once over the padded batch; only the hidden states that predict a
response token are gathered, and the LM head + log_softmax run over them a chunk at a time.
Under autograd each chunk is checkpointed, so backward recomputes one chunk's logits at a
time too: `[batch, seq, vocab]` logits never exist, not even for the response positions.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from clo.errors import CloError


def _decoder_and_head(model: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if decoder is None or head is None:
        raise CloError(
            f"{type(model).__name__} does not expose get_decoder()/get_output_embeddings(); "
            "only causal LMs with a decoder body and an LM head are supported"
        )
    return decoder, head


def _chunk_logps(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    logits = head(hidden).float()  # fp32 softmax: bf16 log-probs are too coarse for DPO margins
    return torch.gather(F.log_softmax(logits, dim=-1), 1, targets[:, None]).squeeze(1)


def sequence_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    chunk_tokens: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs [batch] and response token counts [batch] of each sequence.

    `response_mask[b, t]` is True when token t of row b is a response token (its log-prob
    counts); prompt and padding positions are False.
    """
    decoder, head = _decoder_and_head(model)
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask,
                     use_cache=False).last_hidden_state
    # position t predicts token t+1
    target_mask = response_mask[:, 1:]
    rows = target_mask.nonzero(as_tuple=True)[0]
    h = hidden[:, :-1][target_mask]
    targets = input_ids[:, 1:][target_mask]
    needs_grad = torch.is_grad_enabled() and (
        h.requires_grad or any(p.requires_grad for p in head.parameters())
    )
    pieces = []
    for start in range(0, targets.numel(), chunk_tokens):
        sl = slice(start, start + chunk_tokens)
        if needs_grad:
            pieces.append(checkpoint(_chunk_logps, head, h[sl], targets[sl], use_reentrant=False))
        else:
            pieces.append(_chunk_logps(head, h[sl], targets[sl]))
    token_logps = torch.cat(pieces) if pieces else hidden.new_zeros(0, dtype=torch.float32)
    sums = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
    sums = sums.index_add(0, rows, token_logps)
    counts = target_mask.sum(dim=1)
    return sums, counts
