"""bench.flops: the training FLOP count the trainer-vs-TRL table divides by, and the peak."""

from types import SimpleNamespace

import pytest

from bench.flops import matmul_gflops, model_dims, training_flops


def test_training_flops_by_hand() -> None:
    # N = 1,000 parameters, 10 trained, 2 layers of attention width 8, sequences of 3 and 5
    linear = (4 * 1000 + 2 * 10) * (3 + 5)
    attention = 6 * 2 * 8 * (3 * 3 + 5 * 5)  # causal QK^T and PV, forward + backward
    assert training_flops([3, 5], 1000, 10, 2, 8) == linear + attention
    # a frozen base costs 4N per token, full fine-tuning the textbook 6N
    assert training_flops([1], 100, 0, 1, 0) == 400
    assert training_flops([1], 100, 100, 1, 0) == 600


def test_model_dims_use_head_dim_when_the_config_names_one() -> None:
    llama = SimpleNamespace(num_attention_heads=9, hidden_size=576, num_hidden_layers=30)
    assert model_dims(llama) == (30, 576)
    wide = SimpleNamespace(  # Gemma-2 2B: 8 heads of 256 in a 2,304-wide model
        num_attention_heads=8, hidden_size=2304, num_hidden_layers=18, head_dim=256
    )
    assert model_dims(wide) == (18, 2048)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_matmul_peak_is_a_rate(dtype: str) -> None:
    assert matmul_gflops(dtype, seconds=0.01, sizes=(64,)) > 0
