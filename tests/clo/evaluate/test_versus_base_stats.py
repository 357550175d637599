"""versus_base comparisons on hand-checked outcomes, and the model card's evaluation section."""

import math

import pytest

from clo.evaluate.card import _front_matter, evaluation_section
from clo.evaluate.stats import mcnemar_exact, paired_bootstrap_diff, wilson_interval
from clo.evaluate.versus_base import Settings, compare_rate, compare_token_nll

SETTINGS = Settings(resamples=500)


def test_paired_rate_has_both_rates_intervals_delta_and_mcnemar():
    trained = [True, True, True, False, None]
    base = [False, False, True, False, True]
    c = compare_rate(trained, base, SETTINGS)
    assert (c.trained, c.trained_count, c.trained_total) == (0.75, 3, 4)
    assert (c.base, c.base_count, c.base_total) == (0.4, 2, 5)
    assert (c.trained_interval.low, c.trained_interval.high) == pytest.approx(wilson_interval(3, 4))
    # the delta is over the 4 prompts both decided
    assert c.n == 4 and c.delta == pytest.approx(0.5)
    expected = paired_bootstrap_diff([1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0], 500)
    assert (c.delta, c.delta_low, c.delta_high) == pytest.approx(expected)
    assert c.p_value == mcnemar_exact([True, True, True, False], [False, False, True, False])
    assert c.p_value == pytest.approx(0.5)
    assert c.verdict.startswith("trained - base = +0.500")
    assert c.distinguishable == (c.delta_low > 0)


def test_identical_outcomes_are_exactly_zero_and_not_distinguishable():
    c = compare_rate([True, False, True], [True, False, True], SETTINGS, higher_is_better=False)
    assert (c.delta, c.delta_low, c.delta_high, c.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert c.distinguishable is False and "not distinguishable" in c.verdict
    empty = compare_rate([None], [True], SETTINGS)
    assert empty.n == 0 and empty.delta is None and empty.trained is None


def test_token_nll_delta_is_the_token_mean_difference():
    trained = [(-10.0, 5), (-30.0, 10)]
    base = [(-20.0, 5), (-33.0, 10)]
    nll, ppl = compare_token_nll(trained, base, SETTINGS)
    assert nll.trained == pytest.approx(40 / 15) and nll.base == pytest.approx(53 / 15)
    assert nll.delta == pytest.approx(-13 / 15)
    assert ppl.trained == pytest.approx(math.exp(40 / 15))
    assert ppl.delta == pytest.approx(math.exp(40 / 15) - math.exp(53 / 15))
    assert ppl.delta_low <= ppl.delta <= ppl.delta_high
    assert ppl.distinguishable == nll.distinguishable


def test_card_section_and_front_matter():
    c = compare_rate([True, True, False, True], [False, False, False, True], SETTINGS)
    evaluation = {
        "prompt_sources": ["shipped:de@abc", "heldout:4"],
        "config": {"max_new_tokens": 128},
        "versus_base": {"metrics": {"usable_rate_target": c.model_dump(mode="json")}},
    }
    lines = evaluation_section(evaluation, "German")
    row = next(ln for ln in lines if ln.startswith("| usable answers in German"))
    assert "| 25.0% [" in row and "| 75.0% [" in row and "+50.0 pts [" in row
    assert any("shipped:de@abc, heldout:4" in ln for ln in lines)
    assert any(ln.startswith("Usable German answers: trained - base") for ln in lines)
    assert evaluation_section(None, "German") == []

    card = (
        "---\nlibrary_name: peft\nbase_model: /srv/models/x\nlanguage:\n- fr\ntags: [a]\n---\n# x\n"
    )
    fixed = _front_matter(card, ["de", "en"], "org/x")
    assert fixed.startswith("---\nbase_model: org/x\nlanguage:\n- de\n- en\nlibrary_name: peft\n")
    assert "/srv/models" not in fixed and "- fr" not in fixed and "tags: [a]\n---\n# x" in fixed
    assert _front_matter("# bare\n", ["sw", "en"], "m").startswith("---\nbase_model: m\n")
