"""Chunked response-only log-probs equal a naive full-logits computation."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.encoding import collate, encode_quads
from clo.logprobs import sequence_logprobs
from clo.pairs import Quadruple

QUADS = [
    Quadruple("How do I boil an egg?", "Boil it for seven minutes.",
              "Wie koche ich ein Ei?", "Koche es sieben Minuten lang in Wasser."),
    Quadruple("Name a colour.", "Blue.", "Nenne eine Farbe.", "Blau."),
]


@pytest.fixture(scope="module")
def model_and_batch(tiny_qwen2: Path):
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    encoded, _ = encode_quads(tok, QUADS, 128, 64)
    seqs = [s for group in encoded for s in group]
    return model, collate(seqs, tok.pad_token_id), seqs


def naive_logprobs(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Full [batch, seq, vocab] logits, then mask: the reference implementation."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    tok = torch.gather(logp, 2, batch.input_ids[:, 1:, None]).squeeze(2)
    mask = batch.response_mask[:, 1:]
    return (tok * mask).sum(1), mask.sum(1)


@pytest.mark.parametrize("chunk", [16, 7, 100_000])
def test_chunked_equals_naive(model_and_batch, chunk: int) -> None:
    model, batch, _ = model_and_batch
    with torch.no_grad():
        got, counts = sequence_logprobs(model, batch.input_ids, batch.attention_mask,
                                        batch.response_mask, chunk_tokens=chunk)
        want, want_counts = naive_logprobs(model, batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert counts.tolist() == want_counts.tolist()


def test_counts_are_response_tokens_only(model_and_batch) -> None:
    model, batch, seqs = model_and_batch
    with torch.no_grad():
        _, counts = sequence_logprobs(model, batch.input_ids, batch.attention_mask,
                                      batch.response_mask)
    assert counts.tolist() == [s.response_len for s in seqs]


def test_padding_and_prompt_tokens_do_not_count(model_and_batch) -> None:
    model, batch, seqs = model_and_batch
    with torch.no_grad():
        batched, _ = sequence_logprobs(model, batch.input_ids, batch.attention_mask,
                                       batch.response_mask, chunk_tokens=16)
        # the shortest sequence alone (no padding) scores the same as inside the padded batch
        row = min(range(len(seqs)), key=lambda i: len(seqs[i].input_ids))
        n = len(seqs[row].input_ids)
        alone, _ = sequence_logprobs(model, batch.input_ids[row:row + 1, :n],
                                     batch.attention_mask[row:row + 1, :n],
                                     batch.response_mask[row:row + 1, :n])
        # changing a padding token or moving the mask boundary must (not) change the score
        ids = batch.input_ids.clone()
        ids[row, n:] = 5
        repadded, _ = sequence_logprobs(model, ids, batch.attention_mask, batch.response_mask)
        wider = batch.response_mask.clone()
        wider[row, seqs[row].prompt_len - 1] = True
        unmasked, _ = sequence_logprobs(model, batch.input_ids, batch.attention_mask, wider)
    torch.testing.assert_close(alone[0], batched[row], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(repadded, batched, rtol=1e-5, atol=1e-4)
    assert float(unmasked[row]) < float(batched[row]) - 1e-3  # one more (prompt) token counted


def test_chunked_gradients_equal_naive(model_and_batch) -> None:
    model, batch, _ = model_and_batch
    got, _ = sequence_logprobs(model, batch.input_ids, batch.attention_mask,
                               batch.response_mask, chunk_tokens=8)
    got.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    want, _ = naive_logprobs(model, batch)
    want.sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-5, msg=n)
    model.zero_grad()
