"""Attention over a packed row's live blocks (clo.packed_attention) is the masked attention."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo import packed_attention
from clo.encoding import encode_quads, pad_token_id
from clo.packed_attention import PACKED_SDPA, packed_sdpa_forward, routed
from clo.packing import PackedRow, collate_packed, pack_examples, packed_logprobs
from clo.seed import builtin_parallel
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

# (prompt, first, second) per row; the batch is as wide as its widest row, so the others
# carry padding. Lengths cross the CPU flash kernel's block sizes (32 / 64 / 256 / 512).
LAYOUTS = [(5, 9, 3), (40, 70, 200), (1, 1, 1), (97, 300, 31)]


class _Heads(torch.nn.Module):
    """The attributes transformers' SDPA path reads from an attention module."""

    is_causal = True
    num_key_value_groups = 3


def _masked(q, k, v, allowed):  # type: ignore[no-untyped-def]
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed).transpose(1, 2)


@pytest.mark.parametrize("kv_heads", [2, 6])  # grouped-query and plain multi-head
def test_live_block_attention_equals_the_masked_call_values_and_gradients(kv_heads: int) -> None:
    rows = [PackedRow(tuple(range(p + a + b)), p, a, b) for p, a, b in LAYOUTS]
    batch = collate_packed(rows, pad_id=0)
    width = batch.input_ids.shape[1]
    torch.manual_seed(0)
    q = torch.randn(len(rows), 6, width, 16, dtype=torch.float64, requires_grad=True)
    k = torch.randn(len(rows), kv_heads, width, 16, dtype=torch.float64, requires_grad=True)
    v = torch.randn(len(rows), kv_heads, width, 16, dtype=torch.float64, requires_grad=True)
    ours, _ = packed_sdpa_forward(_Heads(), q, k, v, None, packed_layout=LAYOUTS)
    want = _masked(q, k, v, batch.allowed)
    live = torch.zeros(len(rows), width, dtype=torch.bool)
    for r, (p, a, b) in enumerate(LAYOUTS):
        live[r, : p + a + b] = True
    assert ours.shape == want.shape
    torch.testing.assert_close(ours[live], want[live], rtol=1e-10, atol=1e-10)
    assert torch.equal(ours[~live], torch.zeros_like(ours[~live]))  # padding: zeros
    weights = torch.randn_like(want) * live[:, :, None, None]  # a loss over live positions
    grads = [torch.autograd.grad((out * weights).sum(), (q, k, v)) for out in (ours, want)]
    for mine, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-10)


def test_without_a_layout_it_is_transformers_sdpa() -> None:
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 6, 12, 16) for _ in range(3))
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module = _Heads()
    module.num_key_value_groups = 1
    ours, _ = packed_sdpa_forward(module, q, k, v, None, scaling=0.3)
    want, _ = sdpa_attention_forward(module, q, k, v, None, scaling=0.3)
    assert torch.equal(ours, want)


def _tiny(path: Path, attention: str = "sdpa"):  # type: ignore[no-untyped-def]
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=attention)
    return model, AutoTokenizer.from_pretrained(path)


def test_packed_forwards_of_sdpa_models_run_through_the_live_block_path(
    tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tok = _tiny(tiny_llama)
    encoded, _ = encode_quads(tok, builtin_parallel("de")[:2], 128, 64)
    rows = pack_examples([s for ex in encoded for s in ex])
    calls: list[tuple[int, int, int]] = []
    real = packed_attention._row_attention

    def counting(q, k, v, layout, width, dropout, scale):  # type: ignore[no-untyped-def]
        calls.append(layout)
        return real(q, k, v, layout, width, dropout, scale)

    monkeypatch.setattr(packed_attention, "_row_attention", counting)
    with torch.no_grad():
        packed_logprobs(model, rows, pad_id=pad_token_id(tok))
    layouts = [(r.prompt_len, r.first_len, r.second_len) for r in rows]
    assert calls == layouts * model.config.num_hidden_layers  # every layer, every row
    assert model.config._attn_implementation == "sdpa"  # routed for the forward only


def test_routing_restores_sdpa_on_errors_and_leaves_eager_models_alone(tiny_llama: Path) -> None:
    model, _ = _tiny(tiny_llama)
    with pytest.raises(RuntimeError), routed(model) as live:
        assert live and model.config._attn_implementation == PACKED_SDPA
        with routed(model) as inner:  # nested (the step holds it over its backward)
            assert inner and model.config._attn_implementation == PACKED_SDPA
        assert model.config._attn_implementation == PACKED_SDPA
        raise RuntimeError("mid-forward")
    assert model.config._attn_implementation == "sdpa"
    eager, _ = _tiny(tiny_llama, "eager")
    with routed(eager) as live:
        assert not live and eager.config._attn_implementation == "eager"
