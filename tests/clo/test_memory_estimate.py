"""The full fine-tuning memory estimate: parameter counts and per-GPU arithmetic."""

from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForCausalLM

from clo.memory_estimate import (
    GIB,
    GPU_80GB_BYTES,
    LLAMA_2_7B,
    Bytes,
    ModelShape,
    fsdp_full_finetune,
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
