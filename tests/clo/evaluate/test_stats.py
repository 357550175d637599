"""Rate intervals and paired tests against values worked out by hand."""

import math

import pytest

from clo.evaluate.stats import (
    describe_difference,
    distinguishable,
    mcnemar_exact,
    paired_bootstrap_diff,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # z = 1.959964, d = 1 + z²/n: centre = (p + z²/2n) / d, half = z √(p(1-p)/n + z²/4n²) / d
        (8, 10, 0.49016, 0.94332),
        (5, 10, 0.23659, 0.76341),
        (0, 10, 0.0, 0.27753),
        (10, 10, 0.72247, 1.0),
        (1, 1, 0.20654, 1.0),
    ],
)
def test_wilson_interval_by_hand(successes, n, low, high):
    got = wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=1e-5)


def test_wilson_interval_at_other_confidences():
    # z(0.90) = 1.644854 for 8/10: centre 0.73612, half 0.19532
    assert wilson_interval(8, 10, 0.90) == pytest.approx((0.54079, 0.93144), abs=1e-5)
    narrow, wide = wilson_interval(8, 10, 0.5), wilson_interval(8, 10, 0.99)
    assert wide[0] < narrow[0] < 0.8 < narrow[1] < wide[1]


def test_wilson_interval_rejects_bad_input():
    for args in ((0, 0), (11, 10), (-1, 10)):
        with pytest.raises(ValueError):
            wilson_interval(*args)
    with pytest.raises(ValueError):
        wilson_interval(1, 2, confidence=1.0)


def test_mcnemar_exact_by_hand():
    def pairs(only_a: int, only_b: int, both: int = 3, neither: int = 2) -> tuple[list, list]:
        a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
        b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
        return a, b

    # 1 vs 5 discordant: 2 * (C(6,0) + C(6,1)) / 2^6 = 14/64
    assert mcnemar_exact(*pairs(1, 5)) == pytest.approx(14 / 64)
    assert mcnemar_exact(*pairs(5, 1)) == pytest.approx(14 / 64)  # two-sided: symmetric
    # 0 vs 6: 2 / 64
    assert mcnemar_exact(*pairs(0, 6)) == pytest.approx(2 / 64)
    # 2 vs 8: 2 * (1 + 10 + 45) / 1024
    assert mcnemar_exact(*pairs(2, 8)) == pytest.approx(112 / 1024)
    # 3 vs 3: the doubled tail is over 1, capped
    assert mcnemar_exact(*pairs(3, 3)) == 1.0
    # no discordant pair: nothing to test
    assert mcnemar_exact(*pairs(0, 0)) == 1.0
    assert mcnemar_exact([], []) == 1.0
    # large n stays exact and finite: 0 vs 2000 discordant
    assert mcnemar_exact(*pairs(0, 2000)) == pytest.approx(2 * 2.0**-2000, rel=1e-9)
    with pytest.raises(ValueError):
        mcnemar_exact([True], [True, False])


def test_paired_bootstrap_by_hand():
    # constant differences: every resample has the same mean
    assert paired_bootstrap_diff([1, 1, 0], [0, 0, -1], 200, seed=3) == pytest.approx(
        (1.0, 1.0, 1.0)
    )
    # two pairs with differences 0 and 1: resampled means 0, 0.5, 1 with p 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% quantiles are 0 and 1
    assert paired_bootstrap_diff([0, 1], [0, 0], 2000, seed=0) == (0.5, 0.0, 1.0)
    # identical runs: no difference
    assert paired_bootstrap_diff([0.2, 0.7, 0.4], [0.2, 0.7, 0.4], 100, seed=1) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_is_deterministic_and_brackets_the_mean():
    a = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1] * 5
    b = [0, 0, 1, 0, 0, 1, 0, 1, 0, 0] * 5
    first = paired_bootstrap_diff(a, b, 1000, seed=7)
    assert first == paired_bootstrap_diff(a, b, 1000, seed=7)
    assert first != paired_bootstrap_diff(a, b, 1000, seed=8)
    mean, low, high = first
    assert mean == pytest.approx(0.4)  # differences: 20 ones, 30 zeros
    assert low < mean < high
    # the normal approximation: variance of the differences 0.4 * 0.6, se √(0.24 / 50) = 0.069
    assert low == pytest.approx(0.4 - 1.96 * math.sqrt(0.24 / 50), abs=0.03)
    assert high == pytest.approx(0.4 + 1.96 * math.sqrt(0.24 / 50), abs=0.03)


def test_paired_bootstrap_rejects_unpaired_input():
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1.0], [1.0, 0.0], 10, seed=0)
    with pytest.raises(ValueError):
        paired_bootstrap_diff([], [], 10, seed=0)
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1.0], [0.0], 0, seed=0)


def test_distinguishable_and_its_sentence():
    assert distinguishable(0.01, 0.2) and distinguishable(-0.3, -0.1)
    assert not distinguishable(-0.1, 0.2) and not distinguishable(0.0, 0.2)
    up = describe_difference(0.12, 0.04, 0.2, a_name="CLO", b_name="SFT")
    assert up == (
        "CLO - SFT = +0.120 (95% interval +0.040 to +0.200): "
        "distinguishable from zero, CLO is higher than SFT"
    )
    assert describe_difference(-0.1, -0.2, -0.01).endswith("A is lower than B")
    assert describe_difference(0.05, -0.02, 0.12).endswith(
        "not distinguishable from zero (the interval includes 0)"
    )
