"""Chunked response-only log-probs (and their gradients) equal a naive full-logits computation."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from clo.encoding import collate, encode_quads
from clo.errors import CloError
from clo.logprobs import sequence_logprobs, token_logprobs
from clo.pairs import Quadruple
from clo.trainable import apply_trainable

QUADS = [
    Quadruple(
        "How do I boil an egg?",
        "Boil it for seven minutes.",
        "Wie koche ich ein Ei?",
        "Koche es sieben Minuten lang in Wasser.",
    ),
    Quadruple("Name a colour.", "Blue.", "Nenne eine Farbe.", "Blau."),
]


@pytest.fixture(scope="module")
def model_and_batch(tiny_qwen2: Path):
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    encoded, _ = encode_quads(tok, QUADS, 128, 64)
    seqs = [s for group in encoded for s in group]
    return model, collate(seqs, tok.pad_token_id), seqs


def fresh_model(path: Path, trainable: str, tied: bool = False):
    """A new copy of the tiny model with `trainable` applied (as the trainer does)."""
    if tied:
        config = AutoConfig.from_pretrained(path, tie_word_embeddings=True)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    else:
        model = AutoModelForCausalLM.from_pretrained(path)
    cfg = SimpleNamespace(trainable=trainable, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    model = apply_trainable(model, cfg)
    if trainable == "lora":  # PEFT starts B at zero; random B makes the adapter matter
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.02)
    return model


def naive_logprobs(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Full [batch, seq, vocab] logits, then mask: the reference implementation."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    tok = torch.gather(logp, 2, batch.input_ids[:, 1:, None]).squeeze(2)
    mask = batch.response_mask[:, 1:]
    return (tok * mask).sum(1), mask.sum(1)


def graph_node_names(out: torch.Tensor) -> set[str]:
    """Class names of every autograd node behind `out` (which path computed it)."""
    names, todo, seen = set(), [out.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.add(type(node).__name__)
        todo.extend(fn for fn, _ in node.next_functions)
    return names


def trainable_grads(model, logps: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of sum(weights * logps) for every trainable parameter (then zeroed)."""
    (logps * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("chunk", [16, 7, 100_000])
def test_chunked_equals_naive(model_and_batch, chunk: int) -> None:
    model, batch, _ = model_and_batch
    with torch.no_grad():
        got, counts = sequence_logprobs(
            model, batch.input_ids, batch.attention_mask, batch.response_mask, chunk_tokens=chunk
        )
        want, want_counts = naive_logprobs(model, batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert counts.tolist() == want_counts.tolist()


def test_counts_are_response_tokens_only(model_and_batch) -> None:
    model, batch, seqs = model_and_batch
    with torch.no_grad():
        _, counts = sequence_logprobs(
            model, batch.input_ids, batch.attention_mask, batch.response_mask
        )
    assert counts.tolist() == [s.response_len for s in seqs]


def test_padding_and_prompt_tokens_do_not_count(model_and_batch) -> None:
    model, batch, seqs = model_and_batch
    with torch.no_grad():
        batched, _ = sequence_logprobs(
            model, batch.input_ids, batch.attention_mask, batch.response_mask, chunk_tokens=16
        )
        # the shortest sequence alone (no padding) scores the same as inside the padded batch
        row = min(range(len(seqs)), key=lambda i: len(seqs[i].input_ids))
        n = len(seqs[row].input_ids)
        alone, _ = sequence_logprobs(
            model,
            batch.input_ids[row : row + 1, :n],
            batch.attention_mask[row : row + 1, :n],
            batch.response_mask[row : row + 1, :n],
        )
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


@pytest.mark.parametrize(
    ("trainable", "tied", "fused"),
    [
        ("attention", False, True),  # frozen head: the fused path
        ("lora", False, True),  # PEFT-wrapped model, frozen base head
        ("attention", True, True),  # head tied to a frozen embedding
        ("full", False, False),  # trainable head: the checkpointed path
        ("full", True, False),  # tied and trainable: head and embedding grads add up
    ],
)
def test_values_and_gradients_equal_naive(
    model_and_batch, tiny_qwen2: Path, trainable: str, tied: bool, fused: bool
) -> None:
    _, batch, _ = model_and_batch
    model = fresh_model(tiny_qwen2, trainable, tied)
    weights = torch.linspace(-1.0, 2.0, batch.input_ids.shape[0])  # a distinct grad per row
    got, _ = sequence_logprobs(
        model, batch.input_ids, batch.attention_mask, batch.response_mask, chunk_tokens=8
    )
    assert ("_FrozenHeadLogProbsBackward" in graph_node_names(got)) == fused
    grads = trainable_grads(model, got, weights)
    want, _ = naive_logprobs(model, batch)
    want_grads = trainable_grads(model, want, weights)
    # sums of ~90 nats: one fp32 ulp there is 7.6e-6, so allow a few ulps, not only 1e-5
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    assert grads.keys() == want_grads.keys() and grads
    head = model.get_output_embeddings()
    assert any(p.requires_grad for p in head.parameters()) != fused
    for name, grad in grads.items():
        torch.testing.assert_close(grad, want_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_no_grad_pass_matches_training_pass_bit_for_bit(model_and_batch, tiny_qwen2: Path) -> None:
    """The reference pass (no grad) and step 0 of training must agree exactly: margin 0."""
    _, batch, _ = model_and_batch
    for trainable in ("attention", "full"):
        model = fresh_model(tiny_qwen2, trainable)
        args = (batch.input_ids, batch.attention_mask, batch.response_mask, 8)
        with torch.no_grad():
            reference, _ = sequence_logprobs(model, *args)
        training, _ = sequence_logprobs(model, *args)
        assert training.requires_grad
        assert torch.equal(reference, training.detach()), trainable


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("head_trains", [False, True])
def test_token_logprobs_gradients_wrt_hidden(bias: bool, head_trains: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    head = torch.nn.Linear(16, 300, bias=bias)
    head.requires_grad_(head_trains)
    hidden = torch.randn(41, 16, generator=gen, requires_grad=True)
    targets = torch.randint(0, 300, (41,), generator=gen)
    weights = torch.randn(41, generator=gen)

    got = token_logprobs(head, hidden, targets, chunk_tokens=6)
    (got * weights).sum().backward()
    got_grads = [hidden.grad.clone()] + [p.grad.clone() for p in head.parameters() if head_trains]
    hidden.grad = None
    head.zero_grad(set_to_none=True)
    want = torch.log_softmax(head(hidden), -1).gather(1, targets[:, None]).squeeze(1)
    (want * weights).sum().backward()
    want_grads = [hidden.grad] + [p.grad for p in head.parameters() if head_trains]

    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-5)


def test_bf16_hidden_gets_bf16_gradients() -> None:
    gen = torch.Generator().manual_seed(2)
    head = torch.nn.Linear(32, 400, bias=False).requires_grad_(False)
    hidden32 = torch.randn(20, 32, generator=gen)
    targets = torch.randint(0, 400, (20,), generator=gen)
    hidden = hidden32.bfloat16().requires_grad_(True)
    got = token_logprobs(head.bfloat16(), hidden, targets, chunk_tokens=8)
    assert got.dtype == torch.float32  # log-probs stay fp32 whatever the model dtype
    got.sum().backward()
    assert hidden.grad.dtype == torch.bfloat16

    exact = hidden.detach().float().requires_grad_(True)
    want = torch.log_softmax(exact @ head.weight.float().t(), -1)
    want.gather(1, targets[:, None]).sum().backward()
    torch.testing.assert_close(hidden.grad.float(), exact.grad, rtol=0.02, atol=0.02)


def test_autocast_fused_path_matches_no_grad_path() -> None:
    """Under bf16 autocast (CPU here, CUDA in training) the fused path casts like `head(h)`."""
    gen = torch.Generator().manual_seed(3)
    head = torch.nn.Linear(32, 400, bias=True).requires_grad_(False)
    hidden = torch.randn(20, 32, generator=gen, requires_grad=True)
    targets = torch.randint(0, 400, (20,), generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            reference = token_logprobs(head, hidden, targets, chunk_tokens=8)
        got = token_logprobs(head, hidden, targets, chunk_tokens=8)
    assert got.dtype == torch.float32 and torch.equal(got.detach(), reference)
    got.sum().backward()
    assert hidden.grad.dtype == torch.float32

    exact = hidden.detach().requires_grad_(True)
    want = torch.log_softmax(head(exact), -1).gather(1, targets[:, None]).squeeze(1)
    want.sum().backward()
    assert 0 < float((got - want).detach().abs().max()) < 0.05  # bf16 GEMM: close, not equal
    torch.testing.assert_close(hidden.grad, exact.grad, rtol=0.02, atol=0.02)


def test_frozen_head_saves_no_vocab_sized_tensor(model_and_batch, tiny_qwen2: Path) -> None:
    """The backward graph keeps [tokens, hidden], never anything with a vocab dimension."""
    _, batch, _ = model_and_batch
    vocab = AutoConfig.from_pretrained(tiny_qwen2).vocab_size
    model = fresh_model(tiny_qwen2, "attention")

    params = {p.data_ptr() for p in model.parameters()}

    def saved_shapes(fn) -> list[tuple[int, ...]]:
        """Shapes of the activations autograd keeps for backward (parameters left out)."""
        shapes: list[tuple[int, ...]] = []

        def pack(t: torch.Tensor) -> torch.Tensor:
            if t.data_ptr() not in params:
                shapes.append(tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return shapes

    ours = saved_shapes(
        lambda: sequence_logprobs(
            model, batch.input_ids, batch.attention_mask, batch.response_mask, chunk_tokens=8
        )
    )
    naive = saved_shapes(lambda: naive_logprobs(model, batch))
    assert any(vocab in s for s in naive)  # the hook does see logits when they are kept
    assert ours and not any(vocab in s for s in ours), [s for s in ours if vocab in s]
    n_tokens = int(batch.response_mask[:, 1:].sum())
    assert (n_tokens, model.config.hidden_size) in ours  # the per-token gradient direction


def test_bad_chunk_size_is_refused() -> None:
    head = torch.nn.Linear(4, 10)
    with pytest.raises(CloError, match="chunk_tokens"):
        token_logprobs(head, torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), 0)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_reference_scoring_in_length_order_keeps_each_examples_place(
    model_and_batch, tiny_qwen2: Path, batch_size: int
) -> None:
    from clo.reference import compute_logps

    model, batch, seqs = model_and_batch
    pad = AutoTokenizer.from_pretrained(tiny_qwen2).pad_token_id
    encoded = [tuple(seqs[i : i + 4]) for i in range(0, len(seqs), 4)]
    # sorted by length, the 8 sequences interleave the two examples' columns
    assert sorted(range(8), key=lambda k: -len(seqs[k].input_ids)) != list(range(8))
    logps, counts = compute_logps(model, encoded, pad, batch_size=batch_size)
    with torch.no_grad():
        want, want_counts = naive_logprobs(model, batch)
    assert logps.shape == (2, 4)
    torch.testing.assert_close(logps.view(-1), want, rtol=1e-5, atol=1e-4)
    assert counts.view(-1).tolist() == want_counts.tolist()


def test_bf16_logits_are_upcast_into_one_reused_buffer() -> None:
    from clo.logprobs import _upcast

    torch.manual_seed(0)
    chunks = [torch.randn(rows, 300).bfloat16() for rows in (8, 8, 5, 12)]
    outs = [_upcast(c) for c in chunks[:3]]
    assert torch.equal(outs[2], chunks[2].float())  # the values of `.float()`...
    # ...in the same memory each time (a fresh mapping per chunk was page-faulted in anew)
    assert len({o.data_ptr() for o in outs}) == 1
    grown = _upcast(chunks[3])  # a larger chunk gets a larger buffer
    assert torch.equal(grown, chunks[3].float())
    fp32 = torch.randn(4, 300)
    assert _upcast(fp32) is fp32  # fp32 logits are not copied
