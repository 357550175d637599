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
        "eval_usable_rate_tgt": (lang.get("target_prompts") or {}).get("usable_rate"),
        "eval_usable_rate_en": (lang.get("english_prompts") or {}).get("usable_rate"),
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
    values.update(_versus_base(evaluation))
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


# versus_base metric (report schema 1.2) -> names of its base value and of its delta
# (the trained values are the sections' own, above)
_VERSUS_BASE: dict[str, tuple[str, str]] = {
    "usable_rate_target": ("eval_usable_rate_tgt_base", "eval_usable_delta_tgt"),
    "usable_rate_english": ("eval_usable_rate_en_base", "eval_usable_delta_en"),
    "pass_rate_target": ("eval_target_pass_rate_base", "eval_target_pass_delta"),
    "pass_rate_english": ("eval_english_pass_rate_base", "eval_english_pass_delta"),
    "perplexity_target": ("eval_ppl_tgt_base", "eval_ppl_delta_tgt"),
    "belebele_target": ("eval_belebele_tgt_base", "eval_belebele_delta_tgt"),
    "belebele_english": ("eval_belebele_en_base", "eval_belebele_delta_en"),
    "mmmlu_target": ("eval_mmmlu_tgt_base", "eval_mmmlu_delta_tgt"),
    "mmmlu_english": ("eval_mmmlu_en_base", "eval_mmmlu_delta_en"),
}


def _versus_base(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Base value and delta (its interval as _low, _high) of the headline metrics."""
    metrics = (evaluation.get("versus_base") or {}).get("metrics") or {}
    values: dict[str, Any] = {}
    for metric, (base, delta) in _VERSUS_BASE.items():
        entry = metrics.get(metric) or {}
        if entry:
            values[base] = entry.get("base")
            for key, suffix in (("delta", ""), ("delta_low", "_low"), ("delta_high", "_high")):
                values[f"{delta}{suffix}"] = entry.get(key)
    return values


def job_summary(result: PipelineResult) -> dict[str, Any]:
    """What the service stores as the job's metrics_summary: training numbers, the
    evaluation's headline numbers and the translation report (under "translation")."""
    return {
        **result.train_summary,
        **headline_metrics(result.evaluation),
        "translation": result.translation_report,
    }
