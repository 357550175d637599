"""Prompt formatting, prompt masking and the truncation policy."""

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from clo.encoding import (
    DEFAULT_TEMPLATE,
    collate,
    encode_pair,
    encode_quads,
    prompt_formatter,
)
from clo.errors import CloError
from clo.pairs import Quadruple

QUAD = Quadruple(
    "How do I boil an egg?",
    "Boil it for seven minutes.",
    "Wie koche ich ein Ei?",
    "Koche es sieben Minuten.",
)


@pytest.fixture(scope="module")
def qwen_tok(tiny_qwen2: Path):
    return AutoTokenizer.from_pretrained(tiny_qwen2)


@pytest.fixture(scope="module")
def llama_tok(tiny_llama: Path):
    return AutoTokenizer.from_pretrained(tiny_llama)


def test_chat_template_prompt_matches_apply_chat_template(qwen_tok) -> None:
    fmt = prompt_formatter(qwen_tok)
    seq = encode_pair(qwen_tok, fmt, QUAD.x_en, QUAD.y_en, 256, 128)
    expected_prompt = qwen_tok.apply_chat_template(
        [{"role": "user", "content": QUAD.x_en}], tokenize=False, add_generation_prompt=True
    )
    assert qwen_tok.decode(seq.input_ids[: seq.prompt_len]) == expected_prompt
    response = seq.input_ids[seq.prompt_len :]
    assert response[-1] == qwen_tok.eos_token_id  # the model learns to stop
    assert qwen_tok.decode(response[:-1]) == QUAD.y_en


def test_base_model_gets_default_template(llama_tok) -> None:
    assert not llama_tok.chat_template
    seq = encode_pair(llama_tok, prompt_formatter(llama_tok), QUAD.x_tgt, QUAD.y_tgt, 256, 128)
    prompt_text = llama_tok.decode(seq.input_ids[: seq.prompt_len])
    assert prompt_text.endswith(DEFAULT_TEMPLATE.format(prompt=QUAD.x_tgt))


def test_long_prompt_keeps_its_end_and_template(qwen_tok) -> None:
    fmt = prompt_formatter(qwen_tok)
    long_prompt = "filler words here " * 60 + "THE REAL QUESTION?"
    seq = encode_pair(qwen_tok, fmt, long_prompt, QUAD.y_en, 128, 40)
    assert seq.prompt_len == 40
    prompt_text = qwen_tok.decode(seq.input_ids[: seq.prompt_len])
    assert prompt_text.startswith("<|im_start|>user\n")  # template header never cut
    assert prompt_text.endswith("THE REAL QUESTION?<|im_end|>\n<|im_start|>assistant\n")
    assert "filler words here " * 60 not in prompt_text


def test_long_response_is_cut_to_max_length_and_counted(qwen_tok) -> None:
    long_quad = Quadruple("Tell me a story", "once upon a time " * 80, "Erzähl", "es war " * 80)
    encoded, report = encode_quads(qwen_tok, [QUAD, long_quad], max_length=64, max_prompt_length=32)
    assert all(len(s.input_ids) <= 64 for seqs in encoded for s in seqs)
    assert all(s.response_len >= 1 for seqs in encoded for s in seqs)
    assert report.examples == 2 and report.examples_truncated == 1
    assert report.responses_truncated == 4 and report.prompts_truncated == 0
    assert report.response_tokens_dropped > 0
    # the short example is untouched
    assert qwen_tok.decode(encoded[0][0].input_ids[encoded[0][0].prompt_len : -1]) == QUAD.y_en


def test_prompt_never_cut_to_nothing(qwen_tok) -> None:
    with pytest.raises(CloError, match="max_prompt_length"):
        encode_quads(qwen_tok, [QUAD], max_length=64, max_prompt_length=8)


def test_four_sequences_in_order(qwen_tok) -> None:
    (seqs,), _ = encode_quads(qwen_tok, [QUAD], 256, 128)
    texts = [
        (qwen_tok.decode(s.input_ids[: s.prompt_len]), qwen_tok.decode(s.input_ids[s.prompt_len :]))
        for s in seqs
    ]
    assert QUAD.x_en in texts[0][0] and QUAD.y_en in texts[0][1]
    assert QUAD.x_en in texts[1][0] and QUAD.y_tgt in texts[1][1]
    assert QUAD.x_tgt in texts[2][0] and QUAD.y_tgt in texts[2][1]
    assert QUAD.x_tgt in texts[3][0] and QUAD.y_en in texts[3][1]


def test_collate_masks_prompt_and_padding(qwen_tok) -> None:
    (seqs,), _ = encode_quads(qwen_tok, [QUAD], 256, 128)
    batch = collate(seqs, pad_id=qwen_tok.pad_token_id)
    for row, s in enumerate(seqs):
        n = len(s.input_ids)
        assert batch.attention_mask[row].sum() == n
        assert batch.response_mask[row, : s.prompt_len].sum() == 0
        assert batch.response_mask[row, s.prompt_len : n].all()
        assert batch.response_mask[row, n:].sum() == 0
        assert (batch.input_ids[row, n:] == qwen_tok.pad_token_id).all()
