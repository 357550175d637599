"""Training precision: fp32, or bf16 where the hardware is fast at it (CUDA, AMX / AVX512-BF16).

bf16 here is mixed precision with fp32 master weights for the trainable parameters only:

- frozen weights (everything attention-only or LoRA does not train) are stored in bf16, so
  they take half the memory and the matmuls read bf16 directly;
- trainable parameters stay fp32: they are the master copies the optimizer steps (AdamW's
  moments and the gradients are fp32 too). The forward runs under bf16 autocast, which casts
  each trainable weight to a bf16 working copy once per forward (its cast cache) and sends
  the gradient back to the fp32 master, so the working copies are always refreshed from the
  masters and no second persistent copy exists;
- loss arithmetic stays fp32: clo.logprobs takes the log-softmax of fp32 logits, and the
  CLO loss (clo.loss) works on the fp32 log-probs it returns.

"auto" picks bf16 on a CUDA device that supports it and on a CPU whose flags say it has AMX
or AVX512-BF16 instructions (/proc/cpuinfo: amx_bf16, avx512_bf16), fp32 elsewhere: a CPU
without them emulates bf16 matmuls more slowly than it runs fp32 ones.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Any, Literal

import torch

from clo.errors import CloError

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16"]
PrecisionSetting = Literal["auto", "fp32", "bf16"]
FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo cannot be read."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_fast_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU has bf16 matmul instructions and torch's oneDNN can use them."""
    flags = cpu_flags() if flags is None else flags
    has_flags = any(f in flags for f in FAST_BF16_CPU_FLAGS)
    return has_flags and bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 is faster than fp32 on `device` (what "auto" picks bf16 for)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """The precision a run trains in: the setting, or for "auto" what `device` is fast at."""
    if setting == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if setting in ("fp32", "bf16"):
        return "bf16" if setting == "bf16" else "fp32"
    raise CloError(f"unknown precision {setting!r}: use auto, fp32 or bf16", param="precision")


def holds_mixed_dtypes(model: Any) -> bool:
    """bf16 and fp32 parameters side by side: a model prepared by `store_frozen_in_bf16`."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return torch.bfloat16 in dtypes and torch.float32 in dtypes


def autocast_for(
    device: torch.device, precision: str | None = None, model: Any = None
) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for a bf16 run; nothing for fp32.

    `precision` None is the behaviour from before precision was a setting: bf16 autocast on
    CUDA, fp32 elsewhere, except that a model holding bf16 and fp32 weights side by side
    (trained in bf16) always needs autocast for its matmuls to see one dtype.
    """
    if precision is None:
        mixed = model is not None and holds_mixed_dtypes(model)
        precision = "bf16" if device.type == "cuda" or mixed else "fp32"
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def trained_parameter_names(model: torch.nn.Module, trainable: str) -> set[str]:
    """Names of the parameters `trainable` will train, before clo.trainable applies it
    (LoRA trains new adapter weights only: none of the model's own)."""
    from clo.trainable import attention_projections

    if trainable == "full":
        return {n for n, _ in model.named_parameters()}
    if trainable == "lora":
        return set()
    names: set[str] = set()
    for module_name in attention_projections(model):
        module = model.get_submodule(module_name)
        names.update(f"{module_name}.{n}" for n, _ in module.named_parameters())
    return names


@torch.no_grad()
def store_frozen_in_bf16(model: torch.nn.Module, trained: set[str]) -> int:
    """Cast every floating parameter not in `trained` to bf16 in place; returns bytes freed.

    Tied weights are one Parameter, cast once. Buffers (rotary tables) keep their dtype:
    autocast decides the dtype of the ops that read them. The trained parameters are copied
    into memory of their own: loaded from safetensors in their file's dtype they point into
    the checkpoint's memory map, which stays mapped, and every page the bf16 cast read stays
    resident, for as long as one parameter does (SmolLM2-135M: ~420 MB of RSS).
    """
    freed = 0
    for name, p in model.named_parameters(remove_duplicate=True):
        if not p.is_floating_point():
            continue
        if name in trained:
            p.data = p.data.clone()
            continue
        if p.dtype == torch.bfloat16:
            continue
        before = p.numel() * p.element_size()
        p.data = p.data.to(torch.bfloat16)
        freed += before - p.numel() * p.element_size()
    return freed


@torch.no_grad()
def fp32_masters(params: list[torch.nn.Parameter]) -> int:
    """Make every trainable parameter an fp32 master (a bf16-loaded model's are upcast);
    returns how many were cast."""
    cast = 0
    for p in params:
        if p.is_floating_point() and p.dtype != torch.float32:
            p.data = p.data.float()
            cast += 1
    return cast


def parameter_bytes(model: torch.nn.Module) -> dict[str, int]:
    """Bytes of the model's parameters by dtype name, and of its trainable ones."""
    out: dict[str, int] = {}
    for p in model.parameters():
        key = str(p.dtype).removeprefix("torch.")
        out[key] = out.get(key, 0) + p.numel() * p.element_size()
    out["trainable"] = sum(
        p.numel() * p.element_size() for p in model.parameters() if p.requires_grad
    )
    return out
