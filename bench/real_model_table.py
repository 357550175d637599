"""The table of bench.real_model_comparison: one row per arm (base first), read from the reports.

    python -m bench.real_model_table [--out bench/results/real_model_de]

Rates are on the shipped prompt sets (never trained on, the same prompts for every arm),
German and English, with Wilson 95% intervals; Δ is trained − base on the same prompts with
a paired bootstrap interval (from each report's versus_base). CLO vs each SFT arm is paired
over the same prompts too. Writes table.md and table.json next to the reports.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.real_model_comparison import ARMS
from clo.evaluate.paired_runs import Side, paired_usable
from clo.evaluate.report import EvaluationReport
from clo.evaluate.stats import wilson_interval


def _shipped(report: dict[str, Any]) -> str:
    return next(s for s in report["prompt_sources"] if s.startswith("shipped:"))


def usable_flags(report: dict[str, Any], language: str) -> list[float]:
    """1.0 / 0.0 per shipped prompt of `language` ("target" or "en"), in prompt order."""
    source = _shipped(report)
    want = "en" if language == "en" else report["target_language"]
    rows = [
        v
        for v in report["language"]["answer_verdicts"]
        if v["source"] == source and v["prompt_language"] == want
    ]
    rows.sort(key=lambda v: v["index"])
    return [1.0 if v["usable"] else 0.0 for v in rows]


def _rate(flags: list[float]) -> str:
    low, high = wilson_interval(int(sum(flags)), len(flags))
    return f"{sum(flags) / len(flags):.0%} [{low:.0%}, {high:.0%}]"


def _delta(entry: dict[str, Any]) -> str:
    return f"{entry['delta']:+.1%} [{entry['delta_low']:+.1%}, {entry['delta_high']:+.1%}]"


def row(arm: str, report: dict[str, Any]) -> dict[str, Any]:
    """One arm's figures on the shipped sets (usable rates) and the held-out set (NLL)."""
    by_source = report["versus_base"]["by_source"][_shipped(report)]
    metrics = report["versus_base"]["metrics"]
    tgt, en = usable_flags(report, "target"), usable_flags(report, "en")
    return {
        "arm": arm,
        "usable_target": _rate(tgt),
        "usable_target_vs_base": _delta(by_source["usable_rate_target"]),
        "usable_english": _rate(en),
        "usable_english_vs_base": _delta(by_source["usable_rate_english"]),
        "heldout_nll_target": f"{metrics['nll_target']['trained']:.3f}",
        "heldout_nll_vs_base": f"{metrics['nll_target']['delta']:+.3f} "
        f"[{metrics['nll_target']['delta_low']:+.3f}, {metrics['nll_target']['delta_high']:+.3f}]",
    }


def base_row(report: dict[str, Any]) -> dict[str, Any]:
    by_source = report["versus_base"]["by_source"][_shipped(report)]
    metrics = report["versus_base"]["metrics"]

    def rate(entry: dict[str, Any]) -> str:
        low, high = entry["base_interval"]["low"], entry["base_interval"]["high"]
        return f"{entry['base']:.0%} [{low:.0%}, {high:.0%}]"

    return {
        "arm": "base",
        "usable_target": rate(by_source["usable_rate_target"]),
        "usable_target_vs_base": "",
        "usable_english": rate(by_source["usable_rate_english"]),
        "usable_english_vs_base": "",
        "heldout_nll_target": f"{metrics['nll_target']['base']:.3f}",
        "heldout_nll_vs_base": "",
    }


def paired(a: dict[str, Any], b: dict[str, Any], side: Side, names: tuple[str, str]) -> str:
    """a − b on the same shipped prompts (paired bootstrap, McNemar), in words."""
    pair = paired_usable(
        EvaluationReport.model_validate(a), EvaluationReport.model_validate(b), side, names
    )
    if pair is None:
        return "no shared prompts"
    return f"{pair['verdict']}; McNemar p {pair['p_value']:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/real_model_de"))
    args = parser.parse_args()
    reports = {
        arm: json.loads((args.out / arm / "evaluate" / "report.json").read_text())
        for arm in ARMS
        if (args.out / arm / "evaluate" / "report.json").exists()
    }
    rows = [base_row(next(iter(reports.values())))] + [row(a, r) for a, r in reports.items()]
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    comparisons = []
    if "clo" in reports:
        for other in ("sft_target", "sft_both", "sft_dpo", "clo_quarter", "clo_half"):
            if other in reports:
                for language in ("target", "english"):
                    text = paired(reports["clo"], reports[other], language, ("clo", other))
                    comparisons.append(f"- usable {language}: {text}")
    table = "\n".join(lines + ["", "CLO vs each arm on the same shipped prompts:", *comparisons])
    (args.out / "table.md").write_text(table + "\n", encoding="utf-8")
    (args.out / "table.json").write_text(
        json.dumps({"rows": rows, "comparisons": comparisons}, indent=2), encoding="utf-8"
    )
    print(table)  # noqa: T201 - a command's output


if __name__ == "__main__":
    main()
