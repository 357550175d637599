"""Tiny random-weight models of architectures clo.tiny does not build (Phi-3, Gemma-2, ...).

Each is saved with the tiny Qwen2's tokenizer, so the trainer, the exporter and PEFT load it
by path like any other model.
"""

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

SIZES: dict[str, Any] = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)


def build_tiny(out_dir: Path, tokenizer_dir: Path, model_type: str, **overrides: Any) -> Path:
    """Build, save and return a tiny `model_type` causal LM with the given config overrides."""
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
        **{**SIZES, **overrides},
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir
