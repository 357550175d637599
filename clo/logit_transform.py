"""What a model's forward does to the LM head's output, so the chunked head can do the same.

clo.logprobs runs the decoder and the LM head itself, one chunk of tokens at a time, so a
`*ForCausalLM.forward` that changes the logits after the head would be skipped. In the
transformers source:
- Gemma 2/3 (and VaultGemma, T5Gemma, ...): `final_logit_softcapping` c:
  `logits = tanh(logits / c) * c`;
- Cohere / Cohere2: `logits = logits * config.logit_scale`;
- Granite (and GraniteMoE*): `logits = logits / config.logits_scaling`.
`model_transform` reads these from the config; and because other architectures may do
something else (scale the hidden states first, slice the vocabulary, ...), it then checks on
a short probe that the model's own forward and the chunked head agree, and refuses the model
with a CloError when they do not: wrong log-probs would silently train the wrong objective.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch

from clo.errors import CloError
from clo.precision import holds_mixed_dtypes

PROBE_TOKENS = 8
# The probe compares in fp32 (autocast off); bf16 weights still round the head's GEMM.
PROBE_TOLERANCE = 1e-2


@dataclass(frozen=True)
class LogitTransform:
    """logits · scale, then soft-capping c·tanh(logits / c) when `softcap` is set."""

    scale: float = 1.0
    softcap: float | None = None

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.softcap is None

    def apply_(self, logits: torch.Tensor) -> torch.Tensor:
        """In place on fp32 logits (no autograd); the same ops, in the same order, as apply."""
        if self.scale != 1.0:
            logits.mul_(self.scale)
        if self.softcap is not None:
            logits.div_(self.softcap).tanh_().mul_(self.softcap)
        return logits

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Out of place, differentiable; bit-identical to apply_."""
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


IDENTITY = LogitTransform()
_VERIFIED: weakref.WeakKeyDictionary[torch.nn.Module, LogitTransform] = weakref.WeakKeyDictionary()


def _number(config: Any, name: str) -> float | None:
    value = getattr(config, name, None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def configured_transform(config: Any) -> LogitTransform:
    """The transform the known config fields describe (identity when none is set)."""
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    scale = 1.0
    if (logit_scale := _number(config, "logit_scale")) is not None:  # Cohere
        scale *= logit_scale
    if (scaling := _number(config, "logits_scaling")) is not None:  # Granite
        scale /= scaling
    return LogitTransform(scale=scale, softcap=_number(config, "final_logit_softcapping"))


@torch.no_grad()
def _probe_difference(
    model: Any, decoder: torch.nn.Module, head: torch.nn.Module, transform: LogitTransform
) -> float | None:
    """Largest |their logits − ours| on a short probe, relative to their scale; None when
    the shapes differ."""
    device = model.get_input_embeddings().weight.device
    ids = torch.arange(1, PROBE_TOKENS + 1, device=device)[None]  # any ids a vocabulary has
    mask = torch.ones_like(ids)
    seen: list[torch.Tensor] = []
    # one pass: the decoder's output inside the model's own forward is what the head gets
    hook = decoder.register_forward_hook(lambda _m, _a, out: seen.append(out.last_hidden_state))
    was_training = model.training
    model.eval()  # no dropout
    try:
        # without autocast, except for a model holding bf16 frozen weights next to fp32
        # trained ones (clo.precision), whose matmuls need autocast to see one dtype
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=holds_mixed_dtypes(model)):
            theirs = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
            ours = transform.apply_(head(seen[-1]).float())
    finally:
        hook.remove()
        model.train(was_training)
    if theirs.shape != ours.shape:
        return None
    return float((theirs - ours).abs().max()) / max(1.0, float(theirs.abs().max()))


def model_transform(model: Any, decoder: torch.nn.Module, head: torch.nn.Module) -> LogitTransform:
    """The verified logit transform of `model` (probed once per LM head, then cached)."""
    known = _VERIFIED.get(head)
    if known is not None:
        return known
    transform = configured_transform(getattr(model, "config", None))
    difference = _probe_difference(model, decoder, head, transform)
    if difference is None or difference > PROBE_TOLERANCE:
        found = "other logit shapes" if difference is None else f"a difference of {difference:.3g}"
        raise CloError(
            f"{type(model).__name__}'s forward changes the LM head's logits in a way the "
            f"chunked log-prob head does not reproduce ({found} on a probe; it knows "
            "final_logit_softcapping, logit_scale and logits_scaling); its log-probs would "
            "be wrong, so this architecture is not supported",
            param="base_model",
        )
    _VERIFIED[head] = transform
    return transform
