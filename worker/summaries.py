"""The flat numbers the service shows for a job (dashboard columns, job lists, comparisons).

The evaluation report is nested and versioned; these are its headline figures under stable
`eval_*` names, next to the training summary.
"""

from __future__ import annotations

from typing import Any

from clo.pipeline import PipelineResult


def headline_metrics(evaluation: dict[str, Any] | None) -> dict[str, float]:
    """The evaluation's key numbers under flat `eval_*` names (those that were computed)."""
    if not evaluation:
        return {}
    lang = evaluation.get("language") or {}
    pref = (evaluation.get("preference") or {}).get("directions") or {}
    nll = (evaluation.get("preference") or {}).get("nll") or {}
    wins = (evaluation.get("judge") or {}).get("results") or {}
    values: dict[str, Any] = {
        "eval_target_pass_rate": (lang.get("target_prompts") or {}).get("pass_rate"),
        "eval_english_pass_rate": (lang.get("english_prompts") or {}).get("pass_rate"),
        "eval_english_bias": lang.get("english_bias"),
        "eval_pref_acc_tgt": (pref.get("tgt") or {}).get("accuracy"),
        "eval_pref_acc_en": (pref.get("en") or {}).get("accuracy"),
        "eval_reward_margin_tgt": (pref.get("tgt") or {}).get("reward_margin_mean"),
        "eval_reward_margin_en": (pref.get("en") or {}).get("reward_margin_mean"),
        "eval_ppl_tgt": (nll.get("target") or {}).get("perplexity"),
        "eval_win_rate": (wins.get("tgt") or {}).get("win_rate"),
        "eval_win_rate_en": (wins.get("en") or {}).get("win_rate"),
    }
    for bench in evaluation.get("benchmarks") or []:
        which = "en" if bench.get("language") == "en" else "tgt"
        values[f"eval_{bench.get('benchmark')}_{which}"] = bench.get("accuracy")
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def job_summary(result: PipelineResult) -> dict[str, Any]:
    """What the service stores as the job's metrics_summary: training numbers, the
    evaluation's headline numbers and the translation report (under "translation")."""
    return {
        **result.train_summary,
        **headline_metrics(result.evaluation),
        "translation": result.translation_report,
    }
