"""Choose what trains: attention projections only (paper), LoRA on them, or everything.

Attention projections are found by module structure, not by model class: a module whose
children include linear layers named q_proj, k_proj, v_proj and an output projection
(o_proj, out_proj or dense). That covers Llama, Mistral, Qwen2, Gemma, Phi, OPT and similar.
Fused projections — one linear layer computing q, k and v together (Phi-3 qkv_proj,
GPT-NeoX and Falcon query_key_value, MPT Wqkv, Baichuan W_pack) next to the output
projection — are the same weights stacked, so training the fused layer and the output
projection is exactly training q/k/v/o (and LoRA targets them as PEFT's defaults do). A
fused projection that is not a linear layer (GPT-2's Conv1D c_attn) is refused.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from clo.errors import CloError

logger = logging.getLogger(__name__)

QKV_NAMES = ("q_proj", "k_proj", "v_proj")
OUTPUT_NAMES = ("o_proj", "out_proj", "dense")
FUSED_NAMES = ("qkv_proj", "query_key_value", "Wqkv", "W_pack", "qkv", "c_attn")


def _linear(children: dict[str, torch.nn.Module], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if isinstance(children.get(n), torch.nn.Linear)]


def attention_projections(model: torch.nn.Module) -> list[str]:
    """Full module names of every q/k/v/o projection (fused: qkv and o), in model order."""
    found: list[str] = []
    refused: list[str] = []
    for name, module in model.named_modules():
        children = dict(module.named_children())
        prefix = f"{name}." if name else ""
        out = _linear(children, OUTPUT_NAMES)[:1]
        separate = _linear(children, QKV_NAMES)
        fused = _linear(children, FUSED_NAMES)[:1]
        if len(separate) == len(QKV_NAMES) and out:
            found.extend(prefix + n for n in (*QKV_NAMES, *out))
        elif fused and out:
            found.extend(prefix + n for n in (*fused, *out))
        else:
            refused.extend(prefix + n for n in FUSED_NAMES if n in children and n not in fused)
    if found:
        return found
    if refused:
        raise CloError(
            f"{type(model).__name__} uses fused attention projections ({refused[0]}) that are "
            "not linear layers; attention-only and LoRA training need linear q/k/v/o (or "
            "fused qkv) projections — use trainable='full' for this model"
        )
    raise CloError(
        f"no attention projections (q_proj/k_proj/v_proj/o_proj linear layers) found in "
        f"{type(model).__name__}; use trainable='full' for this model"
    )


def _freeze_all_but(model: torch.nn.Module, modules: list[str]) -> None:
    model.requires_grad_(False)
    for name in modules:
        model.get_submodule(name).requires_grad_(True)


def apply_trainable(model: Any, config: Any) -> Any:
    """Set requires_grad per `config.trainable`; for lora returns the PEFT-wrapped model."""
    kind = config.trainable
    if kind == "full":
        model.requires_grad_(True)
        return model
    modules = attention_projections(model)
    if kind == "attention":
        _freeze_all_but(model, modules)
        return model
    if kind == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=modules,
            bias="none",
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, lora)  # freezes the base weights itself
    raise CloError(f"unknown trainable {kind!r}: use attention, lora or full")


DROPOUT_MODULES = (
    torch.nn.Dropout,
    torch.nn.Dropout1d,
    torch.nn.Dropout2d,
    torch.nn.Dropout3d,
    torch.nn.AlphaDropout,
    torch.nn.FeatureAlphaDropout,
)
# Attributes attention modules keep their dropout rate in as a plain float, used as
# `dropout=0.0 if not self.training else self.<name>` (no nn.Dropout module to find).
DROPOUT_RATE_ATTRIBUTES = (
    "attention_dropout",
    "dropout",
    "dropout_p",
    "dropout_prob",
    "attn_dropout",
    "attn_drop",
)


def disable_dropout(model: torch.nn.Module) -> int:
    """Set every dropout of `model` to 0 (modules and float rates); returns how many.

    TRL's disable_dropout_in_model does the module part for preference training, so that the
    policy's log-probs are deterministic and equal the reference's at step 0; HF attention
    layers also keep a float rate applied in train mode, which is zeroed here too.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, DROPOUT_MODULES):
            count += module.p != 0
            module.p = 0.0
            continue
        for name in DROPOUT_RATE_ATTRIBUTES:
            rate = module.__dict__.get(name)  # plain attributes only, not submodules
            if isinstance(rate, float):
                count += rate != 0
                setattr(module, name, 0.0)
    return count


def trainable_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of everything that will get gradients and optimizer state."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for _, p in trainable_parameters(model))
    return {"total": total, "trainable": trainable}
