"""Fused-QKV models (Phi-3, GPT-NeoX, Falcon) train attention-only: the fused q/k/v matrix and
the output projection move, every other weight stays bit-identical, the adapter reloads."""

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.config import TrainConfig
from clo.encoding import collate, encode_quads
from clo.export import export_adapter
from clo.logprobs import sequence_logprobs
from clo.pairs import Quadruple
from clo.trainable import attention_projections
from clo.trainer import train
from tests.clo.tiny_archs import build_tiny
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

QUADS = [
    Quadruple(
        f"Question {i}: name a fruit.",
        f"Apple number {i}.",
        f"Frage {i}: Nenne eine Frucht.",
        f"Apfel Nummer {i}.",
    )
    for i in range(4)
]
META = dict(base_model="tiny/fused", base_revision=None, data_hash="0" * 64, metrics={})
ARCHS = {
    "phi3": ("qkv_proj", "o_proj", dict(num_key_value_heads=2)),
    "gpt_neox": ("query_key_value", "dense", {}),
    "falcon": ("query_key_value", "dense", dict(new_decoder_architecture=True, num_kv_heads=2)),
}


@pytest.fixture(scope="module", params=sorted(ARCHS))
def fused(request: pytest.FixtureRequest, tiny_qwen2: Path, tmp_path_factory) -> tuple:
    qkv, out, overrides = ARCHS[request.param]
    path = build_tiny(
        tmp_path_factory.mktemp(request.param), tiny_qwen2, request.param, **overrides
    )
    return path, qkv, out


def _logps(model, tok) -> torch.Tensor:  # type: ignore[no-untyped-def]
    encoded, _ = encode_quads(tok, QUADS, 64, 32)
    batch = collate([s for g in encoded for s in g], tok.pad_token_id)
    with torch.no_grad():
        return sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.response_mask)[
            0
        ]


def _train(path: Path, workdir: Path, trainable: str):  # type: ignore[no-untyped-def]
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    cfg = TrainConfig(
        trainable=trainable,
        max_steps=2,
        batch_size=4,
        max_length=64,
        max_prompt_length=32,
        learning_rate=2e-2,
        lora_r=4,
        lora_alpha=8,
    )
    return train(model, tok, QUADS, cfg, workdir).model, tok, cfg


def test_finds_the_fused_projection_and_the_output_of_every_layer(fused: tuple) -> None:
    path, qkv, out = fused
    model = AutoModelForCausalLM.from_pretrained(path)
    names = attention_projections(model)
    assert len(names) == 2 * model.config.num_hidden_layers
    assert [n.rsplit(".", 1)[1] for n in names] == [qkv, out] * model.config.num_hidden_layers


def test_attention_only_moves_qkv_and_output_and_nothing_else(fused: tuple, tmp_path: Path) -> None:
    path, qkv, out = fused
    base = dict(AutoModelForCausalLM.from_pretrained(path).named_parameters())
    model, tok, cfg = _train(path, tmp_path / "work", "attention")
    attention = tuple(attention_projections(model))
    moved = []
    for name, p in model.named_parameters():
        if name.startswith(attention):
            moved.append(name)
            assert not torch.equal(p, base[name]), f"{name} did not train"
        else:
            assert torch.equal(p, base[name]), f"{name} changed"
    assert {n.split(".")[-2] for n in moved} == {qkv, out}

    export_adapter(model, tok, tmp_path / "adapter", config=cfg, **META)
    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as f:
        assert {k.split(".")[-2] for k in f.keys()} == {qkv, out}
    reloaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(path), str(tmp_path / "adapter")
    )
    torch.testing.assert_close(_logps(reloaded, tok), _logps(model, tok), rtol=1e-5, atol=1e-4)


def test_lora_on_the_fused_projection_reloads(fused: tuple, tmp_path: Path) -> None:
    path, qkv, out = fused
    model, tok, cfg = _train(path, tmp_path / "work", "lora")
    export_adapter(model, tok, tmp_path / "adapter", config=cfg, **META)
    base = AutoModelForCausalLM.from_pretrained(path)
    base_logps = _logps(base, tok)
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    want = _logps(model, tok)
    assert (want - base_logps).abs().max() > 1e-4  # the adapter changed something
    torch.testing.assert_close(_logps(reloaded, tok), want, rtol=1e-5, atol=1e-4)
