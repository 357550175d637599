"""Batched greedy generation of answers to held-out prompts (left padding, chat template)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from clo.encoding import pad_token_id
from clo.evaluate.scoring import encode_prompts, model_device

logger = logging.getLogger(__name__)


@torch.no_grad()
def generate_answers(
    model: Any,  # a causal LM (plain or PEFT)
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 128,
    batch_size: int = 8,
    max_prompt_tokens: int = 512,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy answers, one per prompt, in input order; `on_batch(done)` after each batch."""
    encoded = encode_prompts(tokenizer, prompts, max_prompt_tokens)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    answers: list[str] = [""] * len(encoded)
    device = model_device(model)
    pad = pad_token_id(tokenizer)
    eos = tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    try:
        done = 0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                seq = encoded[i]
                input_ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                mask[row, width - len(seq) :] = 1
            out = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad,
                eos_token_id=eos,
                # greedy decoding: unset sampling knobs a model's generation_config may carry
                temperature=None,
                top_p=None,
                top_k=None,
            )
            for row, i in enumerate(idx):
                answers[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
            done += len(idx)
            if on_batch is not None:
                on_batch(done)
    finally:
        model.train(was_training)
    logger.debug("generated %d answers (max_new_tokens=%d)", len(answers), max_new_tokens)
    return answers
