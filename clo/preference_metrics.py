"""Held-out cross-lingual preference of a model: which response of each pair it prefers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from clo.encoding import encode_quads, pad_token_id
from clo.loss import PAIRS
from clo.pairs import Quadruple
from clo.reference import compute_logps


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
