"""Two runs on the same shipped prompts, paired: is one's usable right-language rate higher?

Each report keeps a verdict per answer with the prompt source it came from (for example
`shipped:de@<hash>`). Two runs evaluated on the same source answered the same prompts in the
same order, so their answers pair up one to one: the difference gets a paired bootstrap
interval and McNemar's exact test, as the base-vs-trained comparison does. Pydantic and the
standard library only: the API compares stored reports with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any, Literal

from clo.evaluate.report import EvaluationReport
from clo.evaluate.stats import describe_difference, mcnemar_exact, paired_bootstrap_diff

Side = Literal["target", "english"]
BOOTSTRAP_RESAMPLES = 2000


def _usable_by_prompt(report: EvaluationReport, side: Side) -> dict[tuple[str, int], bool]:
    """(shipped source, position within it) -> usable, for decided answers of one side."""
    if report.language is None:
        return {}
    want = "en" if side == "english" else report.target_language
    rank: dict[str, int] = {}
    out: dict[tuple[str, int], bool] = {}
    for record in sorted(report.language.answer_verdicts, key=lambda v: v.index):
        source = record.source or ""
        if record.prompt_language != want or not source.startswith("shipped:"):
            continue
        position = rank.get(source, 0)
        rank[source] = position + 1
        if record.usable is not None:
            out[(source, position)] = record.usable
    return out


def paired_usable(
    a: EvaluationReport, b: EvaluationReport, side: Side, names: tuple[str, str]
) -> dict[str, Any] | None:
    """a's usable rate minus b's on the shipped prompts both answered; None if they share
    none (different prompt sets, or no shipped set)."""
    first, second = _usable_by_prompt(a, side), _usable_by_prompt(b, side)
    keys = sorted(first.keys() & second.keys())
    if not keys:
        return None
    a_pass, b_pass = [first[k] for k in keys], [second[k] for k in keys]
    delta, low, high = paired_bootstrap_diff(
        [float(x) for x in a_pass],
        [float(x) for x in b_pass],
        n_resamples=BOOTSTRAP_RESAMPLES,
        seed=0,
    )
    return {
        "a": names[0],
        "b": names[1],
        "metric": f"usable_rate_{side}",
        "n": len(keys),
        "a_rate": sum(a_pass) / len(keys),
        "b_rate": sum(b_pass) / len(keys),
        "delta": delta,
        "delta_low": low,
        "delta_high": high,
        "p_value": mcnemar_exact(a_pass, b_pass),
        "verdict": describe_difference(delta, low, high, a_name=names[0], b_name=names[1]),
    }


def paired_comparisons(reports: Mapping[str, EvaluationReport]) -> list[dict[str, Any]]:
    """Every pair of runs (in the given order), on target and English prompts."""
    out = []
    for first, second in combinations(reports, 2):
        for side in ("target", "english"):
            pair = paired_usable(reports[first], reports[second], side, (first, second))
            if pair is not None:
                out.append(pair)
    return out
