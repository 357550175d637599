"""The machine's matmul peak per precision, and the FLOPs a training step does.

Peak: the best rate of square matmuls (1024² to 4096²) in each dtype, on the device and
thread count the trainers use, measured in the same run as the benchmark.

Training FLOPs, counted the same way for every trainer on the same sequences (the four of a
CLO example, each prompt + response, as if unpacked):

- linear layers: 2·N per token forward, 2·N backward for the input gradients (they flow
  through every layer, frozen or not) and 2·N_trainable for the weight gradients of what
  trains: (4·N + 2·N_trainable) per token, N all parameters (a tied head counted once);
- attention scores and values, causal: forward 2·s²·d per layer for a sequence of length s
  (QKᵀ and PV over the s²/2 pairs, d = heads × head_dim), backward twice that:
  6·L·d·s² per sequence.

A trainer that skips work (ours packs each prompt once and runs the LM head over response
tokens only) gets the same count, so its share of peak measures useful work per second.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

SIZES = (1024, 2048, 4096)


def matmul_gflops(
    dtype: str, device: str = "cpu", seconds: float = 1.0, sizes: Sequence[int] = SIZES
) -> float:
    """Best GFLOP/s of an n×n matmul over `sizes`, each timed for about `seconds`."""
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dt)
        b = torch.randn(n, n, device=device).to(dt)
        a @ b  # warm-up (oneDNN primitive creation, AMX tile set-up)
        reps, started = 0, time.perf_counter()
        while True:
            a @ b
            reps += 1
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                break
        best = max(best, 2 * n**3 * reps / elapsed / 1e9)
    return best


def peak_gflops(device: str = "cpu", seconds: float = 1.0) -> dict[str, float]:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s} of this device."""
    return {p: matmul_gflops(p, device, seconds) for p in ("fp32", "bf16")}


def model_dims(config: Any) -> tuple[int, int]:
    """(layers, attention width d = heads × head_dim) of a Hugging Face decoder config."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return int(config.num_hidden_layers), int(heads * head_dim)


def training_flops(
    lengths: Sequence[int], params: int, trainable: int, layers: int, attn_dim: int
) -> float:
    """FLOPs of one training pass (forward + backward) over sequences of `lengths`."""
    linear = (4 * params + 2 * trainable) * sum(lengths)
    attention = 6 * layers * attn_dim * sum(s * s for s in lengths)
    return float(linear + attention)
