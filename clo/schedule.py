"""Learning-rate schedule as a pure function of the step (no scheduler object to checkpoint)."""

import math


def lr_at(step: int, total: int, warmup: int, peak: float, kind: str = "cosine") -> float:
    """Learning rate for 0-based optimizer `step` of `total`: linear warmup, then decay.

    Warmup ramps (step+1)/warmup·peak so step 0 already moves; cosine and linear decay to 0
    at the last step; constant stays at peak after warmup.
    """
    if total < 1:
        raise ValueError("total steps must be >= 1")
    if not 0 <= warmup < total:
        warmup = max(0, min(warmup, total - 1))
    if step < warmup:
        return peak * (step + 1) / warmup
    if kind == "constant":
        return peak
    decay_steps = total - warmup
    progress = (step - warmup) / decay_steps if decay_steps > 0 else 1.0
    progress = min(max(progress, 0.0), 1.0)
    if kind == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear":
        return peak * (1.0 - progress)
    raise ValueError(f"unknown schedule {kind!r}: use cosine, linear or constant")
