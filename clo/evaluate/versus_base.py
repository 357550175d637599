"""base | trained | delta with uncertainty, from per-prompt outcomes of both models.

Pure functions (no torch): each metric pairs the two models prompt by prompt (or item by
item, sequence by sequence). Rates get Wilson 95% intervals on each side; the difference
gets a percentile paired bootstrap over the pairs and, for pass/fail outcomes, an exact
McNemar p-value; a sentence says whether it is distinguishable from zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clo.evaluate.language_section import LanguageOutcomes, Outcome
from clo.evaluate.report import Comparison, Interval
from clo.evaluate.stats import (
    describe_difference,
    distinguishable,
    mcnemar_exact,
    paired_bootstrap_diff,
    wilson_interval,
)
from clo.evaluate.verdict import REASON_ORDER


@dataclass(frozen=True)
class Settings:
    """How the differences are estimated."""

    resamples: int = 2000
    seed: int = 0
    confidence: float = 0.95


def _wilson(k: int, n: int, confidence: float) -> Interval | None:
    if not n:
        return None
    low, high = wilson_interval(k, n, confidence)
    return Interval(low=low, high=high, confidence=confidence)


def _difference(
    trained: Sequence[float], base: Sequence[float], settings: Settings
) -> dict[str, Any]:
    """delta, its paired bootstrap interval and the plain sentence (empty dict: no pairs)."""
    if not trained:
        return {}
    diffs = {t - b for t, b in zip(trained, base, strict=True)}
    if len(diffs) == 1:  # every resample has the same mean: the interval is that point
        delta = low = high = diffs.pop()
    else:
        delta, low, high = paired_bootstrap_diff(
            trained, base, settings.resamples, settings.seed, settings.confidence
        )
    return {
        "delta": delta,
        "delta_low": low,
        "delta_high": high,
        "delta_method": f"paired bootstrap over pairs ({settings.resamples} resamples, "
        f"seed {settings.seed})",
        "distinguishable": distinguishable(low, high),
        "verdict": describe_difference(
            delta, low, high, settings.confidence, a_name="trained", b_name="base"
        ),
    }


def compare_rate(
    trained: Sequence[Outcome],
    base: Sequence[Outcome],
    settings: Settings,
    higher_is_better: bool = True,
) -> Comparison:
    """A pass/fail metric on the same prompts: each side's rate over its decided prompts,
    the difference over the prompts both decided."""
    if len(trained) != len(base):
        raise ValueError(f"outcomes must be paired: {len(trained)} != {len(base)}")
    t_dec = [o for o in trained if o is not None]
    b_dec = [o for o in base if o is not None]
    pairs = [(t, b) for t, b in zip(trained, base, strict=True) if t is not None and b is not None]
    tk, bk = sum(t_dec), sum(b_dec)
    return Comparison(
        kind="rate",
        higher_is_better=higher_is_better,
        base=bk / len(b_dec) if b_dec else None,
        trained=tk / len(t_dec) if t_dec else None,
        base_count=bk,
        base_total=len(b_dec),
        trained_count=tk,
        trained_total=len(t_dec),
        base_interval=_wilson(bk, len(b_dec), settings.confidence),
        trained_interval=_wilson(tk, len(t_dec), settings.confidence),
        n=len(pairs),
        p_value=mcnemar_exact([t for t, _ in pairs], [b for _, b in pairs]) if pairs else None,
        **_difference([float(t) for t, _ in pairs], [float(b) for _, b in pairs], settings),
    )


def compare_token_nll(
    trained: Sequence[tuple[float, int]],
    base: Sequence[tuple[float, int]],
    settings: Settings,
) -> tuple[Comparison, Comparison]:
    """(nll, perplexity) of the same sequences: (summed log-prob, tokens) per sequence.

    The token-mean NLL is sum(-logp) / sum(tokens); its difference is bootstrapped over
    sequences with the token total held at the full sample's (a ratio estimator), so the
    point estimate is exactly trained - base. Perplexity's interval maps the NLL interval
    through exp with the base perplexity held fixed.
    """
    if len(trained) != len(base) or not trained:
        raise ValueError("need the same, non-empty list of sequences for both models")
    tokens = sum(t for _, t in trained)
    scale = len(trained) / max(tokens, 1)
    t_nll = [-lp * scale for lp, _ in trained]
    b_nll = [-lp * scale for lp, _ in base]
    diff = _difference(t_nll, b_nll, settings)
    t_mean, b_mean = sum(t_nll) / len(t_nll), sum(b_nll) / len(b_nll)
    nll = Comparison(
        kind="mean", higher_is_better=False, base=b_mean, trained=t_mean, n=len(trained), **diff
    )
    b_ppl, t_ppl = math.exp(min(b_mean, 700.0)), math.exp(min(t_mean, 700.0))
    ppl = Comparison(
        kind="mean",
        higher_is_better=False,
        base=b_ppl,
        trained=t_ppl,
        n=len(trained),
        delta=t_ppl - b_ppl,
        delta_method="from the nll interval: base perplexity x (exp(nll delta) - 1)",
    )
    if nll.delta_low is not None and nll.delta_high is not None:
        low = b_ppl * math.expm1(min(nll.delta_low, 700.0))
        high = b_ppl * math.expm1(min(nll.delta_high, 700.0))
        ppl.delta_low, ppl.delta_high = low, high
        ppl.distinguishable = distinguishable(low, high)
        ppl.verdict = describe_difference(
            t_ppl - b_ppl, low, high, settings.confidence, a_name="trained", b_name="base"
        )
    return nll, ppl


def language_comparisons(
    side: str, trained: LanguageOutcomes, base: LanguageOutcomes, settings: Settings
) -> dict[str, Comparison]:
    """usable_rate_, pass_rate_ and failure_<side>_<reason> for one prompt language."""
    out = {
        f"usable_rate_{side}": compare_rate(trained.usable, base.usable, settings),
        f"pass_rate_{side}": compare_rate(trained.lcb, base.lcb, settings),
    }
    for reason in REASON_ORDER:
        out[f"failure_{side}_{reason}"] = compare_rate(
            [reason in r for r in trained.reasons],
            [reason in r for r in base.reasons],
            settings,
            higher_is_better=False,
        )
    return out


def rate_comparisons(
    trained: dict[str, LanguageOutcomes], base: dict[str, LanguageOutcomes], settings: Settings
) -> dict[str, Comparison]:
    """Usable and LCB pass rates for target and English prompts (the by-source figures)."""
    out: dict[str, Comparison] = {}
    for side in ("target", "english"):
        out[f"usable_rate_{side}"] = compare_rate(trained[side].usable, base[side].usable, settings)
        out[f"pass_rate_{side}"] = compare_rate(trained[side].lcb, base[side].lcb, settings)
    return out


def compare_unpaired_rate(
    trained: Sequence[bool], base: Sequence[bool], settings: Settings
) -> Comparison:
    """Two rates on different items (e.g. a benchmark sampled differently): no delta interval."""
    tk, bk = sum(trained), sum(base)
    return Comparison(
        kind="rate",
        higher_is_better=True,
        base=bk / len(base) if base else None,
        trained=tk / len(trained) if trained else None,
        base_count=bk,
        base_total=len(base),
        trained_count=tk,
        trained_total=len(trained),
        base_interval=_wilson(bk, len(base), settings.confidence),
        trained_interval=_wilson(tk, len(trained), settings.confidence),
        n=0,
        delta=(tk / len(trained) - bk / len(base)) if trained and base else None,
        delta_method="not paired: the two runs scored different items",
    )


@dataclass(frozen=True)
class PairedData:
    """Everything versus_base pairs, gathered by the evaluation stage."""

    trained_language: dict[str, LanguageOutcomes]  # "target" / "english"
    base_language: dict[str, LanguageOutcomes]
    sources: Sequence[tuple[str, int, int]]  # (source name, start, stop) in the prompt list
    # "target" / "english" -> per sequence (summed log-prob, tokens), trained and base
    nll: dict[str, tuple[list[tuple[float, int]], list[tuple[float, int]]]]
    # "target" / "english" -> per preference pair: chosen log-prob > rejected, trained and base
    logp_accuracy: dict[str, tuple[list[bool], list[bool]]]
    # "<benchmark>_<target|english>" -> (trained correct, base correct, paired on the same items)
    benchmarks: dict[str, tuple[list[bool], list[bool], bool]]


def paired_comparisons(
    data: PairedData, settings: Settings
) -> tuple[dict[str, Comparison], dict[str, dict[str, Comparison]]]:
    """(metrics, by_source): every metric with a base value, and the rates per prompt source."""
    metrics: dict[str, Comparison] = {}
    by_source: dict[str, dict[str, Comparison]] = {}
    if data.trained_language and data.base_language:
        t, b = data.trained_language, data.base_language
        for side in ("target", "english"):
            metrics.update(language_comparisons(side, t[side], b[side], settings))
        metrics["english_bias"] = compare_rate(
            t["target"].english, b["target"].english, settings, higher_is_better=False
        )
        if len(data.sources) > 1:
            for name, start, stop in data.sources:
                by_source[name] = rate_comparisons(
                    {k: v.select(start, stop) for k, v in t.items()},
                    {k: v.select(start, stop) for k, v in b.items()},
                    settings,
                )
    for side, (trained, base) in data.nll.items():
        metrics[f"nll_{side}"], metrics[f"perplexity_{side}"] = compare_token_nll(
            trained, base, settings
        )
    for side, (t_acc, b_acc) in data.logp_accuracy.items():
        metrics[f"logp_accuracy_{side}"] = compare_rate(t_acc, b_acc, settings)
    for name, (t_ok, b_ok, paired) in data.benchmarks.items():
        metrics[name] = (
            compare_rate(t_ok, b_ok, settings)
            if paired
            else compare_unpaired_rate(t_ok, b_ok, settings)
        )
    return metrics, by_source
