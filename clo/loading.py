"""Load a causal LM and its tokenizer, kept apart from training (nanochat's checkpoint_manager).

Safetensors only and no remote code: a model id from a job spec must never run code or
unpickle weights on the worker.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

import torch

from clo.errors import CloError

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """fp32 on CPU; on CUDA keep fp32 master weights (autocast runs bf16) unless told."""
    if dtype is None or dtype == "auto":
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise CloError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def load_model_and_tokenizer(
    path_or_id: str | Path,
    revision: str | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer) via from_pretrained; pad token falls back to EOS when missing."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = torch.device(device) if device is not None else default_device()
    torch_dtype = resolve_dtype(dtype, dev)
    source = str(path_or_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=revision, trust_remote_code=False
        )
        model = AutoModelForCausalLM.from_pretrained(
            source,
            revision=revision,
            dtype=torch_dtype,
            use_safetensors=True,
            trust_remote_code=False,
        )
    except (OSError, ValueError) as exc:
        raise CloError(f"cannot load model {source!r} (revision {revision}): {exc}") from exc
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise CloError(f"tokenizer of {source!r} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    model.to(dev)  # type: ignore[arg-type]  # transformers types .to() oddly
    logger.info("loaded %s (%s, %s) on %s", source, type(model).__name__, torch_dtype, dev)
    return model, tokenizer


def device_option(device: str) -> str | None:
    """A job's device setting as load_model_and_tokenizer takes it ("auto": None)."""
    return None if device == "auto" else device


def load_exported(
    exported: Path, base_source: str, base_revision: str | None, device: str | None
) -> Any:
    """A trained model from its export, as a user loads it: base + adapter through stock
    PEFT, or the full model; in eval mode."""
    from peft import PeftModel

    if (exported / "adapter_config.json").is_file():
        base, _ = load_model_and_tokenizer(base_source, revision=base_revision, device=device)
        return PeftModel.from_pretrained(base, str(exported)).eval()
    model, _ = load_model_and_tokenizer(exported, device=device)
    return model.eval()


def free_memory() -> None:
    """Return freed tensors' memory (CUDA caches too) before the next model loads."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
