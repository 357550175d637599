"""Detecting attention projections by structure, and freezing everything else."""

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from clo.config import TrainConfig
from clo.errors import CloError
from clo.trainable import apply_trainable, attention_projections, trainable_parameters


@pytest.mark.parametrize("fixture", ["tiny_qwen2", "tiny_llama"])
def test_finds_q_k_v_o_of_every_layer(fixture: str, request: pytest.FixtureRequest) -> None:
    model = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(fixture))
    names = attention_projections(model)
    layers = model.config.num_hidden_layers
    assert len(names) == 4 * layers
    for i in range(layers):
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            assert f"model.layers.{i}.self_attn.{proj}" in names


def test_fused_attention_is_a_clear_error() -> None:
    gpt2 = GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=32)
    )
    with pytest.raises(CloError, match="fused.*c_attn.*trainable='full'"):
        attention_projections(gpt2)


def test_model_without_attention_is_a_clear_error() -> None:
    import torch

    mlp = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with pytest.raises(CloError, match="no attention projections"):
        attention_projections(mlp)


def test_attention_only_freezes_everything_else(tiny_qwen2: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    model = apply_trainable(model, TrainConfig(trainable="attention"))
    names = {n for n, _ in trainable_parameters(model)}
    assert names and all(".self_attn." in n and n.split(".")[-2].endswith("_proj") for n in names)
    # q/k/v carry biases in Qwen2: those train with their matrix
    assert "model.layers.0.self_attn.q_proj.bias" in names
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert "model.embed_tokens.weight" in frozen and "lm_head.weight" in frozen
    assert any("mlp" in n for n in frozen)


def test_lora_trains_only_adapters_on_attention(tiny_llama: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model = apply_trainable(model, TrainConfig(trainable="lora", lora_r=4, lora_alpha=8))
    names = [n for n, _ in trainable_parameters(model)]
    assert len(names) == 2 * 4 * model.config.num_hidden_layers  # lora_A + lora_B per projection
    assert all("lora_" in n and "self_attn" in n for n in names)


def test_full_trains_everything(tiny_llama: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model.requires_grad_(False)
    model = apply_trainable(model, TrainConfig(trainable="full"))
    assert all(p.requires_grad for p in model.parameters())
