"""Job specs the tests that run whole jobs submit."""

from __future__ import annotations

from typing import Any


def train_spec(max_steps: int, checkpoint_every: int, **extra: Any) -> dict[str, Any]:
    """A tiny-qwen2 job on the shipped parallel data, evaluation off (faster)."""
    spec: dict[str, Any] = {
        "base_model": "tiny-qwen2",
        "target_language": "de",
        "data_size": 12,
        "seed_data": {"source": "parallel"},
        "hyperparameters": {
            "max_steps": max_steps,
            "batch_size": 2,
            "learning_rate": 1e-3,
            "max_length": 128,
            "checkpoint_every": checkpoint_every,
        },
        "evaluation": {"enabled": False, "heldout_size": 0},
    }
    spec.update(extra)
    return spec
