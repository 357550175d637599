"""Run against run on the same shipped prompts: paired difference, McNemar, pairing rules."""

from __future__ import annotations

from typing import Any

import pytest

from clo.evaluate.compare import compare_reports
from clo.evaluate.paired_runs import paired_usable
from clo.evaluate.report import EvaluationReport
from tests.support.evaluation_reports import evaluation_report

SHIPPED = "shipped:de@0123456789ab"


def _record(lang: str, index: int, usable: bool | None, source: str) -> dict[str, Any]:
    return {
        "prompt_language": lang,
        "index": index,
        "usable": usable,
        "reasons": [] if usable else ["wrong_language"],
        "primary_reason": None if usable else "wrong_language",
        "language": lang if usable else "en",
        "language_share": 1.0 if usable else 0.0,
        "tokens": 20,
        "prompt_token_share": 0.0,
        "copied_share": 0.0,
        "top_ngram_share": 0.0,
        "distinct_ngram_ratio": 1.0,
        "source": source,
    }


def _report(target_usable: list[bool | None], heldout: int, source: str = SHIPPED) -> Any:
    """A report whose shipped German answers are `target_usable`, after `heldout` held-out
    answers that are all usable (they must not count: each run holds out its own)."""
    data = evaluation_report(0)
    records = [_record("de", i, True, "heldout:x") for i in range(heldout)]
    records += [_record("de", heldout + i, u, source) for i, u in enumerate(target_usable)]
    records += [_record("en", i, True, source) for i in range(len(target_usable))]
    data["language"]["answer_verdicts"] = records
    return EvaluationReport.model_validate(data)


def test_paired_difference_counts_only_the_shared_shipped_prompts() -> None:
    clo = _report([True] * 30 + [False] * 10, heldout=3)
    sft = _report([True] * 10 + [False] * 30, heldout=5)  # other held-out size: same pairing
    pair = paired_usable(clo, sft, "target", ("clo", "sft"))
    assert pair is not None
    assert pair["n"] == 40 and pair["a_rate"] == 0.75 and pair["b_rate"] == 0.25
    assert pair["delta"] == pytest.approx(0.5)
    assert 0.0 < pair["delta_low"] <= 0.5 <= pair["delta_high"]
    assert pair["p_value"] == pytest.approx(2 * 0.5**20)  # 20 discordant pairs, all one way
    assert "distinguishable from zero" in pair["verdict"] and "not" not in pair["verdict"]
    english = paired_usable(clo, sft, "english", ("clo", "sft"))
    assert english is not None and english["delta"] == 0.0 and english["p_value"] == 1.0


def test_undecided_answers_and_other_prompt_sets_are_not_paired() -> None:
    a = _report([True, None, False, True], heldout=0)
    b = _report([False, True, None, True], heldout=0)
    pair = paired_usable(a, b, "target", ("a", "b"))
    assert pair is not None and pair["n"] == 2  # positions 0 and 3 only
    other = _report([True] * 4, heldout=0, source="shipped:de@ffffffffffff")
    assert paired_usable(a, other, "target", ("a", "other")) is None


def test_compare_reports_carries_every_pair() -> None:
    runs = {
        "clo": _report([True] * 8, heldout=2),
        "sft": _report([False] * 8, heldout=2),
        "sft+dpo": _report([True] * 4 + [False] * 4, heldout=2),
    }
    paired = compare_reports(runs)["paired"]
    assert [(p["a"], p["b"], p["metric"]) for p in paired] == [
        ("clo", "sft", "usable_rate_target"),
        ("clo", "sft", "usable_rate_english"),
        ("clo", "sft+dpo", "usable_rate_target"),
        ("clo", "sft+dpo", "usable_rate_english"),
        ("sft", "sft+dpo", "usable_rate_target"),
        ("sft", "sft+dpo", "usable_rate_english"),
    ]
    assert paired[0]["delta"] == 1.0 and paired[4]["delta"] == -0.5
