"""Each prompt once (clo.packing): packed rows score and train like unpacked sequences."""

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from clo.config import TrainConfig
from clo.encoding import collate, encode_quads, pad_token_id
from clo.logprobs import sequence_logprobs
from clo.packing import pack_examples, packed_logprobs, packing_unsupported
from clo.seed import builtin_parallel
from clo.trainable import apply_trainable
from clo.trainer import TrainingRun, train
from tests.clo.tiny_archs import build_tiny
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

QUADS = builtin_parallel("de")[:6]
# fp32 sums of n token log-probs: the two paths add the same terms in other orders (other
# GEMM shapes), so they differ by rounding only; 1e-5 per token is ~100x fp32's epsilon.
PER_TOKEN = 1e-5


def sequences(tok):
    encoded, _ = encode_quads(tok, QUADS, 128, 64)
    return [s for ex in encoded for s in ex]


def both_paths(model, tok):
    """(unpacked, packed) summed log-probs and counts of every sequence of QUADS."""
    seqs = sequences(tok)
    batch = collate(seqs, pad_token_id(tok))
    unpacked = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.response_mask)
    packed = packed_logprobs(model, pack_examples(seqs), pad_id=pad_token_id(tok))
    return unpacked, packed


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_packed_logprobs_and_gradients_equal_unpacked(
    request: pytest.FixtureRequest, arch: str, attention: str
) -> None:
    path = request.getfixturevalue(f"tiny_{arch}")
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=attention)
    tok = AutoTokenizer.from_pretrained(path)
    assert packing_unsupported(model) is None
    model = apply_trainable(model, TrainConfig(trainable="attention"))
    (lp_u, n_u), (lp_p, n_p) = both_paths(model, tok)
    assert torch.equal(n_u, n_p)
    assert float(((lp_u - lp_p).abs() / n_u).max()) <= PER_TOKEN
    weights = torch.linspace(-1.0, 1.0, lp_u.numel())  # any loss mixing every sequence
    grads = []
    for lp in (lp_u, lp_p):
        model.zero_grad(set_to_none=True)
        (lp * weights).sum().backward(retain_graph=True)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    scale = max(float(g.abs().max()) for g in grads[0].values())
    for name, g in grads[0].items():
        assert float((g - grads[1][name]).abs().max()) <= PER_TOKEN * scale, name


def test_packed_rows_hold_each_prompt_once(tiny_qwen2: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    seqs = sequences(tok)
    rows = pack_examples(seqs)
    assert len(rows) == len(seqs) // 2
    prompts = sum(s.prompt_len for s in seqs)
    assert sum(len(r.input_ids) for r in rows) == sum(len(s.input_ids) for s in seqs) - prompts // 2


def test_training_packed_equals_unpacked(tiny_qwen2: Path, tmp_path: Path) -> None:
    cfg = dict(max_steps=2, batch_size=2, max_length=96, max_prompt_length=48, learning_rate=1e-3)
    runs = {}
    for packed in (False, True):
        model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
        tok = AutoTokenizer.from_pretrained(tiny_qwen2)
        config = TrainConfig(**cfg, pack_prompts=packed)
        runs[packed] = train(model, tok, QUADS, config, tmp_path / str(packed))
        assert runs[packed].runtime["packed_prompts"] is packed
    assert runs[True].history[0]["margin_en"] == pytest.approx(0.0, abs=1e-6)  # ref packed too
    for a, b in zip(runs[False].history, runs[True].history, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    want = dict(runs[False].model.named_parameters())
    for name, p in runs[True].model.named_parameters():
        if name.endswith("k_proj.bias"):
            # softmax ignores a key bias (it adds q.b to every score of a query), so its
            # gradient is rounding noise, which AdamW scales up to full lr-sized steps
            continue
        torch.testing.assert_close(p, want[name], rtol=1e-4, atol=1e-6, msg=name)


def test_models_without_custom_masks_fall_back_to_unpacked(
    tiny_qwen2: Path, tmp_path: Path
) -> None:
    # OPT derives its learned positions from the 2-D mask: a packed row would be misplaced
    opt = build_tiny(tmp_path / "opt", tiny_qwen2, "opt", ffn_dim=128, word_embed_proj_dim=64)
    model = AutoModelForCausalLM.from_pretrained(opt)
    tok = AutoTokenizer.from_pretrained(opt)
    assert "model type 'opt'" in str(packing_unsupported(model))
    config = TrainConfig(max_steps=1, batch_size=2, max_length=96, max_prompt_length=48)
    result = train(model, tok, QUADS[:2], config, tmp_path / "run")
    assert result.runtime["packed_prompts"] is False and result.steps == 1
    assert result.history[0]["margin_en"] == pytest.approx(0.0, abs=1e-6)
    # an attention implementation that takes no custom mask, and a sliding window
    flash = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    flash.config._attn_implementation = "flash_attention_2"
    assert "does not take custom 4-D masks" in str(packing_unsupported(flash))
    windowed = AutoConfig.for_model("mistral", sliding_window=16)
    windowed._attn_implementation = "sdpa"
    assert "sliding-window" in str(packing_unsupported(type("M", (), {"config": windowed})()))


def test_trainer_scores_the_reference_packed_only_when_it_trains_packed(
    tiny_llama: Path, tmp_path: Path
) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    config = TrainConfig(max_steps=1, batch_size=2, max_length=96, max_prompt_length=48)
    cache = tmp_path / "cache"
    run = TrainingRun(model, tok, QUADS, config, tmp_path / "a", cache)
    assert run.packed and len(list(cache.iterdir())) == 1
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    unpacked = config.model_copy(update={"pack_prompts": False})
    other = TrainingRun(model, tok, QUADS, unpacked, tmp_path / "b", cache)
    assert not other.packed and len(list(cache.iterdir())) == 2  # its own key
    assert other.ref is not None and run.ref is not None
    assert float(((other.ref - run.ref).abs()).max()) <= 1e-3
