"""Tiny causal LMs with real architectures, random weights and a locally trained tokenizer.

No model hub is reachable from tests or the offline demo, so they build these, save them
with `save_pretrained`, and load them back through the same `from_pretrained` path a real
model takes.
"""

import json
import logging
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PreTrainedTokenizerFast,
)

logger = logging.getLogger(__name__)

Arch = Literal["qwen2", "llama"]
DATA_DIR = Path(__file__).parent / "data"

# ChatML, as Qwen2 instruct models ship it; the tiny Llama gets no template so the
# "base model without a chat template" path is exercised too.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# A few lines per paper language so the byte-level BPE learns merges beyond English.
_MULTILINGUAL_LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Wie kann ich meine Zeit besser einteilen? Mach eine Liste und fang klein an.",
    "敏捷的棕色狐狸跳过了懒狗。我们今天学习如何写一封信。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘습니다. 오늘은 편지 쓰는 법을 배웁니다.",
    "Rubah cokelat yang cepat melompati anjing yang malas. Hari ini kita belajar menulis.",
    "Mbweha mwepesi wa kahawia anaruka juu ya mbwa mvivu. Leo tunajifunza kuandika barua.",
    "Kọ̀lọ̀kọ̀lọ̀ aláwọ̀ ilẹ̀ tó yára fò kọjá ajá ọ̀lẹ. Lónìí a ń kọ́ bí a ṣe ń kọ lẹ́tà.",
]


# Lines of each seed file the tiny tokenizers train on (the files' sizes on 2026-11-30).
_FROZEN_CORPUS_LINES = {"builtin_seed.jsonl": 222, "builtin_parallel_de.jsonl": 124}


def tokenizer_corpus() -> list[str]:
    """Local text the tiny tokenizers are trained on: shipped seed data plus sample lines."""
    lines = list(_MULTILINGUAL_LINES)
    # Only the seed sets, and only their lines as first shipped: evaluation fixtures and seed
    # data added later must not change the tiny models (tests calibrated on them would drift).
    for path in [
        DATA_DIR / "builtin_seed.jsonl",
        *sorted(DATA_DIR.glob("builtin_parallel_*.jsonl")),
    ]:
        rows = path.read_text(encoding="utf-8").splitlines()
        for raw in rows[: _FROZEN_CORPUS_LINES.get(path.name)]:
            if raw.strip():
                row = json.loads(raw)
                lines.extend(str(v) for v in row.values() if isinstance(v, str))
    return lines


def train_byte_level_tokenizer(
    vocab_size: int = 2048, with_chat_template: bool = True
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (covers every script) on the local corpus."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # untyped in transformers
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>" if with_chat_template else "<|endoftext|>",
        pad_token="<pad>",
        unk_token=None,
    )
    if with_chat_template:
        fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_causal_lm(
    out_dir: str | Path,
    arch: Arch = "qwen2",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    vocab_size: int = 2048,
    seed: int = 0,
) -> Path:
    """Build, save and return the directory of a tiny random-weight causal LM + tokenizer."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_byte_level_tokenizer(vocab_size, with_chat_template=(arch == "qwen2"))
    config = AutoConfig.for_model(
        arch,
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    logger.info("built tiny %s (%d params) at %s", arch, model.num_parameters(), out)
    return out
