"""Side-by-side comparison of evaluation reports (e.g. CLO vs the SFT baseline).

The result is the paper's table row for one model and language: one value per metric and
run, plus which run is best on each metric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from clo.errors import CloError
from clo.evaluate.paired_runs import paired_comparisons
from clo.evaluate.report import SCHEMA_VERSION, EvaluationReport

# metric name -> (getter, higher is better)
_Getter = Callable[[EvaluationReport], float | None]


def _bench(name: str, lang: str) -> _Getter:
    def get(r: EvaluationReport) -> float | None:
        code = r.target_language if lang == "tgt" else "en"
        hits = [b.accuracy for b in r.benchmarks if b.benchmark == name and b.language == code]
        return hits[0] if hits else None

    return get


def _win(key: str) -> _Getter:
    def get(r: EvaluationReport) -> float | None:
        res = r.judge.results.get(key) if r.judge else None
        return res.win_rate if res else None

    return get


def _pref(direction: str) -> _Getter:
    def get(r: EvaluationReport) -> float | None:
        stats = r.preference.directions.get(direction) if r.preference else None
        return stats.accuracy if stats else None

    return get


METRICS: dict[str, tuple[_Getter, bool]] = {
    "win_rate_target": (_win("tgt"), True),
    "win_rate_english": (_win("en"), True),
    "usable_rate_target": (
        lambda r: r.language.target_prompts.usable_rate if r.language else None,
        True,
    ),
    "usable_rate_english": (
        lambda r: r.language.english_prompts.usable_rate if r.language else None,
        True,
    ),
    "language_pass_rate_target": (
        lambda r: r.language.target_prompts.pass_rate if r.language else None,
        True,
    ),
    "language_pass_rate_english": (
        lambda r: r.language.english_prompts.pass_rate if r.language else None,
        True,
    ),
    "english_bias": (lambda r: r.language.english_bias if r.language else None, False),
    "preference_accuracy_target": (_pref("tgt"), True),
    "preference_accuracy_english": (_pref("en"), True),
    "perplexity_target": (
        lambda r: r.preference.nll["target"].perplexity if r.preference else None,
        False,
    ),
    "belebele_target": (_bench("belebele", "tgt"), True),
    "belebele_english": (_bench("belebele", "en"), True),
    "mmmlu_target": (_bench("mmmlu", "tgt"), True),
    "mmmlu_english": (_bench("mmmlu", "en"), True),
}


def compare_reports(reports: Mapping[str, EvaluationReport]) -> dict[str, Any]:
    """One row per run and metric, for runs evaluated on the same target language."""
    if not reports:
        raise CloError("compare_reports needs at least one report")
    languages = {r.target_language for r in reports.values()}
    if len(languages) != 1:
        raise CloError(
            f"reports cover different target languages {sorted(languages)}; "
            "compare runs of one language at a time"
        )
    runs = {
        name: {metric: get(r) for metric, (get, _) in METRICS.items()}
        for name, r in reports.items()
    }
    best: dict[str, str | None] = {}
    for metric, (_, higher) in METRICS.items():
        scored: dict[str, float] = {
            name: value for name, v in runs.items() if (value := v[metric]) is not None
        }
        if not scored:
            best[metric] = None
            continue
        pick = max if higher else min
        top = pick(scored.values())
        winners = [n for n, v in scored.items() if v == top]
        best[metric] = winners[0] if len(winners) == 1 else None  # None: a tie
    return {
        "schema_version": SCHEMA_VERSION,
        "target_language": languages.pop(),
        "metrics": list(METRICS),
        "higher_is_better": {m: higher for m, (_, higher) in METRICS.items()},
        "runs": runs,
        "best": best,
        # Run against run on the same shipped prompts, with paired intervals.
        "paired": paired_comparisons(reports),
    }
