"""Uncertainty of evaluation rates and of differences between two runs on the same prompts.

Pure functions on plain numbers (no numpy or scipy): a Wilson score interval for one rate,
a paired bootstrap interval for the mean difference of per-prompt scores, an exact McNemar
test for paired pass/fail outcomes, and a sentence saying whether a difference is
distinguishable from zero.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from statistics import NormalDist


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (low, high) for the rate successes / n."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at p = 0 or 1 an end is exactly 0 or 1; rounding would leave it a hair off
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values (numpy's default method)."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def paired_bootstrap_diff(
    a: Sequence[float],
    b: Sequence[float],
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """(mean of a - b, low, high): percentile bootstrap over prompts, the same seed same result.

    `a[i]` and `b[i]` are two runs' scores on prompt i (e.g. 1.0 usable, 0.0 not); prompts
    are resampled with replacement, keeping each pair together.
    """
    if len(a) != len(b):
        raise ValueError(f"a and b must be paired: {len(a)} != {len(b)} scores")
    if not a:
        raise ValueError("need at least one pair")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    _z(confidence)  # validates it
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(n_resamples))
    alpha = (1 - confidence) / 2
    return sum(diffs) / n, _quantile(means, alpha), _quantile(means, 1 - alpha)


def mcnemar_exact(a_pass: Sequence[bool], b_pass: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value: a binomial(n, 1/2) test on the discordant pairs."""
    if len(a_pass) != len(b_pass):
        raise ValueError(f"a_pass and b_pass must be paired: {len(a_pass)} != {len(b_pass)}")
    only_a = sum(bool(x) and not bool(y) for x, y in zip(a_pass, b_pass, strict=True))
    only_b = sum(bool(y) and not bool(x) for x, y in zip(a_pass, b_pass, strict=True))
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)  # exact big-int ratio
    return min(1.0, 2 * tail)


def distinguishable(low: float, high: float) -> bool:
    """True when the interval [low, high] excludes zero."""
    return low > 0.0 or high < 0.0


def describe_difference(
    mean_diff: float,
    low: float,
    high: float,
    confidence: float = 0.95,
    a_name: str = "A",
    b_name: str = "B",
) -> str:
    """One sentence: the difference, its interval and whether it is distinguishable from 0."""
    figure = (
        f"{a_name} - {b_name} = {mean_diff:+.3f} "
        f"({confidence:.0%} interval {low:+.3f} to {high:+.3f})"
    )
    if not distinguishable(low, high):
        return f"{figure}: not distinguishable from zero (the interval includes 0)"
    direction = "higher" if low > 0.0 else "lower"
    return f"{figure}: distinguishable from zero, {a_name} is {direction} than {b_name}"
