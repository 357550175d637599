"""Scoring held-out text with the trainer's own encoding and log-prob code.

Evaluation must score exactly the sequences training optimised, so prompts are framed by
`clo.encoding` (chat template, or its default template for base models; response + EOS;
the same truncation policy) and log-probs come from `clo.logprobs` (LM head in chunks).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from clo.encoding import (
    EncodedSequence,
    collate,
    encode_pair,
    pad_token_id,
    prompt_formatter,
)
from clo.logprobs import sequence_logprobs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequenceScore:
    """Log-probability of a response given its prompt, summed over `tokens` response tokens."""

    logprob: float
    tokens: int


def encode_prompts(
    tokenizer: Any, prompts: Sequence[str], max_prompt_tokens: int
) -> list[list[int]]:
    """Token ids of each prompt as the model sees it before answering (cut from the left)."""
    fmt = prompt_formatter(tokenizer)
    budget = max(1, max_prompt_tokens - fmt.overhead)
    out = []
    for prompt in prompts:
        content = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])[-budget:]
        out.append(fmt.prefix_ids + content + fmt.suffix_ids)
    return out


def model_device(model: Any) -> torch.device:
    device: torch.device = next(model.parameters()).device
    return device


@torch.no_grad()
def score_encoded(
    model: Any, sequences: Sequence[EncodedSequence], pad_id: int, batch_size: int = 8
) -> list[SequenceScore]:
    """Summed response log-probs of already encoded sequences, batched by similar length."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i].input_ids))
    results: dict[int, SequenceScore] = {}
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate([sequences[i] for i in idx], pad_id).to(device)
            sums, counts = sequence_logprobs(
                model, batch.input_ids, batch.attention_mask, batch.response_mask
            )
            for row, i in enumerate(idx):
                results[i] = SequenceScore(float(sums[row]), int(counts[row]))
    finally:
        model.train(was_training)
    return [results[i] for i in range(len(sequences))]


def score_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    responses: Sequence[str],
    batch_size: int = 8,
    max_length: int = 1024,
    max_prompt_length: int = 512,
) -> list[SequenceScore]:
    """log p(response + EOS | formatted prompt) for each pair, encoded as in training."""
    fmt = prompt_formatter(tokenizer)
    encoded = [
        encode_pair(tokenizer, fmt, p, r, max_length, max_prompt_length)
        for p, r in zip(prompts, responses, strict=True)
    ]
    return score_encoded(model, encoded, pad_token_id(tokenizer), batch_size)
