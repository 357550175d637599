"""The full fine-tuning memory estimate: parameter counts and per-GPU arithmetic."""

import math
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForCausalLM

from clo.memory_estimate import (
    ADAMW_8BIT_BYTES,
    GIB,
    GPU_80GB_BYTES,
    LLAMA_2_7B,
    Bytes,
    ModelShape,
    activation_bytes,
    fsdp_full_finetune,
    llama_2_7b_table,
    state_bytes,
    training_memory,
)


def test_llama_2_7b_has_its_published_parameter_count() -> None:
    assert LLAMA_2_7B.params == 6_738_415_616
    assert LLAMA_2_7B.layer_params == 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096


def test_shape_from_a_config_counts_what_the_model_holds(tiny_llama: Path) -> None:
    shape = ModelShape.from_hf_config(AutoConfig.from_pretrained(tiny_llama))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert shape.params == sum(p.numel() for p in model.parameters())
    assert shape.layers == len(model.model.layers)
    assert shape.layer_params == sum(p.numel() for p in model.model.layers[0].parameters())


def test_per_gpu_bytes_are_18_bytes_a_parameter_shared_out() -> None:
    n = LLAMA_2_7B.params
    one = fsdp_full_finetune(LLAMA_2_7B, 1)
    assert one.total == 18 * n and one.in_flight == 0
    assert one.total / GIB == pytest.approx(112.96, abs=0.01)
    assert not one.fits()  # the point: no single 80 GB GPU holds it
    in_flight = (LLAMA_2_7B.root_params + 2 * LLAMA_2_7B.layer_params) * 2 + (
        LLAMA_2_7B.layer_params * 6
    )
    for gpus in (2, 4, 8):
        est = fsdp_full_finetune(LLAMA_2_7B, gpus)
        assert est.in_flight == in_flight
        assert est.optimizer == -(-8 * n // gpus)
        assert est.total == pytest.approx(18 * n / gpus + in_flight, abs=4)
        assert est.fits()
    # activations are the caller's: a 30 GiB batch no longer fits on 2 GPUs, still on 4
    assert not fsdp_full_finetune(LLAMA_2_7B, 2, activation_bytes=30 * GIB).fits()
    assert fsdp_full_finetune(LLAMA_2_7B, 4, activation_bytes=30 * GIB).fits()
    assert fsdp_full_finetune(LLAMA_2_7B, 2).fits(GPU_80GB_BYTES, usable=0.7) is False


def test_other_precisions_and_bad_input() -> None:
    fp32_only = Bytes(weights=0, master=4, optimizer=8, grads=4)  # plain fp32 AdamW
    assert fsdp_full_finetune(LLAMA_2_7B, 1, per_param=fp32_only).total == 16 * LLAMA_2_7B.params
    with pytest.raises(ValueError, match="gpus must be >= 1"):
        fsdp_full_finetune(LLAMA_2_7B, 0)


def test_levers_bytes_a_parameter() -> None:
    assert state_bytes("fp32", "adamw").sharded == 16
    assert state_bytes("bf16", "adamw") == Bytes()  # the FSDP2 estimate's default
    assert state_bytes("bf16", "adamw_8bit").sharded == pytest.approx(12.03125)
    assert ADAMW_8BIT_BYTES == pytest.approx(2 + 8 / 256)


def test_full_finetune_with_the_levers_on_1_to_8_gpus() -> None:
    n = LLAMA_2_7B.params
    assert training_memory(LLAMA_2_7B, 1).total == fsdp_full_finetune(LLAMA_2_7B, 1).total
    fp32 = training_memory(LLAMA_2_7B, 1, precision="fp32")
    assert (fp32.total, fp32.master) == (16 * n, 0)
    eight_bit = training_memory(LLAMA_2_7B, 1, optimizer="adamw_8bit")
    assert eight_bit.optimizer == pytest.approx(ADAMW_8BIT_BYTES * n, abs=1)
    assert eight_bit.total / GIB == pytest.approx(75.50, abs=0.01)
    # 8-bit moments alone do not bring a 7B under one 80 GB GPU's usable 72 GiB; 2 do
    assert not eight_bit.fits()
    assert training_memory(LLAMA_2_7B, 2, optimizer="adamw_8bit").fits()
    for gpus in (2, 4, 8):
        sharded = training_memory(LLAMA_2_7B, gpus, optimizer="adamw_8bit")
        assert sharded.optimizer == -(-math.ceil(ADAMW_8BIT_BYTES * n) // gpus)


def test_a_trained_subset_keeps_bf16_weights_and_fp32_state_for_itself_only() -> None:
    n, attention = LLAMA_2_7B.params, LLAMA_2_7B.layers * 4 * 4096**2
    one = training_memory(LLAMA_2_7B, 1, trainable_params=attention)
    assert (one.weights, one.master, one.optimizer, one.grads) == (
        2 * n,
        4 * attention,
        8 * attention,
        4 * attention,
    )
    # replicated under DDP: more ranks do not divide it
    assert training_memory(LLAMA_2_7B, 8, trainable_params=attention).total == one.total
    with pytest.raises(ValueError, match="trainable_params"):
        training_memory(LLAMA_2_7B, 1, trainable_params=n + 1)


def test_activations_grow_with_tokens_and_checkpointing_cuts_them() -> None:
    off = activation_bytes(LLAMA_2_7B, 2048)
    on = activation_bytes(LLAMA_2_7B, 2048, gradient_checkpointing=True)
    per_layer = 2048 * (12 * 4096 + 4 * 11008) * 2
    head = 3 * 256 * 32000 * 4 + 2048 * 4096 * 4
    assert off == 32 * per_layer + head
    assert on == 32 * 2048 * 4096 * 2 + per_layer + head
    assert on < off / 10
    assert activation_bytes(LLAMA_2_7B, 4096) - head > 2 * (off - head) - 1
    with_act = training_memory(LLAMA_2_7B, 2, tokens_per_gpu=2048, gradient_checkpointing=True)
    assert with_act.activations == on
    with pytest.raises(ValueError, match="hidden"):
        activation_bytes(ModelShape(layers=1, layer_params=1, root_params=1), 8)


def test_the_documented_table_has_every_lever_and_gpu_count() -> None:
    rows = llama_2_7b_table()
    assert len(rows) == 2 + 3 * 4
    assert [r.split("|")[2].strip() for r in rows[2:6]] == ["1", "2", "4", "8"]
    assert all(r.endswith("| no |") for r in rows[2::4])  # one GPU: never, even checkpointed
    assert all(r.endswith("| yes |") for i, r in enumerate(rows[2:]) if i % 4)
