"""Made-up evaluation reports for the page, CLI and comparison tests: a schema-1.2 report
built from a seed through clo's own report models, and the same report as a pre-1.1 job
stored it."""

from __future__ import annotations

import math
from typing import Any, Literal

from clo.evaluate.language_section import LanguageOutcomes
from clo.evaluate.report import (
    AnswerSample,
    BaseRun,
    BenchmarkResult,
    DirectionStats,
    EvaluationReport,
    Interval,
    JudgeReport,
    LanguageRate,
    LanguageReport,
    LineResult,
    NllStats,
    PreferenceReport,
    VersusBaseReport,
    WinRate,
)
from clo.evaluate.stats import wilson_interval
from clo.evaluate.versus_base import PairedData, paired_comparisons
from clo.evaluate.versus_base import Settings as VersusSettings

# The fixture's prompts, in the order an evaluation asks them (held-out first, report 1.2)
HELDOUT_SOURCE = "heldout:16"
SHIPPED_SOURCE = "shipped:de@1a2b3c4d5e6f"
SOURCES = ((HELDOUT_SOURCE, 0, 16), (SHIPPED_SOURCE, 16, 56))
N_PROMPTS = 56


def spread(n: int, k: int) -> list[bool]:
    """k True among n, evenly spread (so every prompt source gets its share)."""
    return [(i * k) // n != ((i + 1) * k) // n for i in range(n)]


def outcomes(usable: int, judged: int, lcb: int, english: int) -> LanguageOutcomes:
    """One model's per-prompt outcomes: `judged` answers long enough for the line check, of
    which `lcb` pass it and `english` are in English; answers past `judged` are too short."""
    short = [None] * (N_PROMPTS - judged)
    ok = spread(N_PROMPTS, usable)
    return LanguageOutcomes(
        usable=tuple(ok),
        lcb=(*spread(judged, lcb), *short),
        english=(*spread(judged, english)[::-1], *short),
        reasons=tuple(
            () if good else (("loop",) if i % 4 == 0 else ("wrong_language",))
            for i, good in enumerate(ok)
        ),
    )


def language_outcomes(seed: int) -> dict[str, tuple[LanguageOutcomes, LanguageOutcomes]]:
    """(trained, base) per prompt language; the base model is the same for every seed."""
    return {
        "target": (outcomes(36 - 4 * seed, 54, 40 - 4 * seed, 8), outcomes(20, 54, 30, 20)),
        "english": (outcomes(50, 56, 52, 52), outcomes(49, 56, 51, 51)),
    }


def nll_sequences(nll: float) -> list[tuple[float, int]]:
    """(summed log-prob, tokens) of 16 sequences, 900 tokens, token-mean NLL `nll`."""
    tokens = [60] * 4 + [55] * 12
    return [(-nll * t + (3.0 if i % 2 else -3.0), t) for i, t in enumerate(tokens)]


def versus_base(seed: int) -> VersusBaseReport:
    """The base model beside the trained one, computed by clo's own paired statistics."""
    lang = language_outcomes(seed)
    data = PairedData(
        trained_language={side: pair[0] for side, pair in lang.items()},
        base_language={side: pair[1] for side, pair in lang.items()},
        sources=SOURCES,
        nll={"target": (nll_sequences(2.1 + seed), nll_sequences(2.3))},
        logp_accuracy={"target": (spread(16, 12), spread(16, 9))},
        benchmarks={"belebele_target": (spread(20, 9 - seed), spread(20, 8), True)},
    )
    settings = VersusSettings(resamples=500)
    metrics, by_source = paired_comparisons(data, settings)
    base = BaseRun(
        model="tiny-lm",
        source="/models/tiny-lm",
        revision=None,
        how="adapter_disabled",
        cached=seed > 0,  # the first job on this base generated it, later ones reuse it
        cache_hits=2 if seed else 0,
        cache_misses=0 if seed else 2,
        generated_answers=0 if seed else 2 * N_PROMPTS,
        scored_benchmarks=0 if seed else 1,
    )
    return VersusBaseReport(
        base=base,
        bootstrap_resamples=settings.resamples,
        metrics=metrics,
        by_source=by_source,
    )


def evaluation_report(seed: int = 0) -> dict[str, Any]:
    """An evaluation report (schema 1.2) built with clo's own schema and statistics, so a
    schema change breaks here."""
    lang = language_outcomes(seed)

    def rate(code: str, o: LanguageOutcomes) -> LanguageRate:
        judged = sum(x is not None for x in o.lcb)
        ok, english = sum(x is True for x in o.lcb), sum(x is True for x in o.english)
        usable = sum(o.usable)
        low, high = wilson_interval(usable, len(o.usable))
        lcb_low, lcb_high = wilson_interval(ok, judged)
        return LanguageRate(
            expected_language=code,
            total=len(o.lcb),
            judged=judged,
            passed=ok,
            failed=judged - ok,
            no_kept_lines=len(o.lcb) - judged,
            pass_rate=ok / judged,
            english_rate=english / judged,
            pass_rate_interval=Interval(low=lcb_low, high=lcb_high),
            usable=usable,
            undecided=0,
            usable_rate=usable / len(o.usable),
            usable_interval=Interval(low=low, high=high),
            failure_reasons={
                r: sum(r in rs for rs in o.reasons) for r in ("wrong_language", "loop")
            },
        )

    def win(lang: str, wins: int, ties: int, losses: int) -> WinRate:
        n = wins + ties + losses
        p = (wins + 0.5 * ties) / n
        return WinRate(
            prompt_language=lang,
            n=n,
            wins=wins,
            ties=ties,
            losses=losses,
            win_rate=p,
            stderr=math.sqrt(p * (1 - p) / n),
            position_inconsistent=ties,
            invalid_verdicts=0,
        )

    def direction(d: Literal["en", "tgt"], acc: float) -> DirectionStats:
        return DirectionStats(
            direction=d,
            n=16,
            accuracy=acc,
            reward_margin_mean=0.42,
            chosen_reward_mean=0.3,
            rejected_reward_mean=-0.12,
            logp_accuracy=acc - 0.1,
            chosen_logp_mean=-40.0,
            rejected_logp_mean=-52.5,
        )

    samples = [
        AnswerSample(
            prompt_language="de",
            prompt="Wie kocht man Tee?",
            answer="Man erhitzt Wasser und gießt es über die Teeblätter.",
            verdict="pass",
            lines=[
                LineResult(
                    text="Man erhitzt Wasser und gießt es über die Teeblätter.",
                    words=8,
                    kept=True,
                    language="de",
                    ok=True,
                )
            ],
        ),
        AnswerSample(
            prompt_language="de",
            prompt="Was ist ein Vulkan?",
            answer="A volcano is an opening in the crust of the earth.",
            verdict="fail",
            lines=[
                LineResult(
                    text="A volcano is an opening in the crust of the earth.",
                    words=10,
                    kept=True,
                    language="en",
                    ok=False,
                )
            ],
        ),
    ]
    report = EvaluationReport(
        model=f"tiny-lm + adapter {seed}",
        target_language="de",
        target_language_name="German",
        heldout_size=16,
        config={"max_new_tokens": 32},
        prompt_sources=[HELDOUT_SOURCE, SHIPPED_SOURCE],
        language=LanguageReport(
            detector="lingua 2.1",
            detector_languages=["de", "en"],
            min_words_per_line=4,
            max_new_tokens=32,
            target_prompts=rate("de", lang["target"][0]),
            english_prompts=rate("en", lang["english"][0]),
            english_bias=8 / 54,
            samples=samples,
        ),
        preference=PreferenceReport(
            beta=0.1,
            reference="adapter_disabled",
            directions={"tgt": direction("tgt", 0.875 - 0.1 * seed), "en": direction("en", 0.75)},
            nll={
                "target": NllStats(sequences=16, tokens=900, nll=2.1 + seed, perplexity=8.2),
                "english": NllStats(sequences=16, tokens=800, nll=1.7, perplexity=5.5),
            },
        ),
        benchmarks=[
            BenchmarkResult(
                benchmark="belebele",
                language="de",
                source="local",
                n=20,
                accuracy=0.45 - 0.05 * seed,
                accuracy_norm=0.5,
            ),
            BenchmarkResult(
                benchmark="belebele",
                language="en",
                source="local",
                n=20,
                accuracy=0.55,
                accuracy_norm=0.6,
            ),
        ],
        judge=JudgeReport(
            judge={"kind": "local", "model": "tiny-judge", "endpoint": ""},
            prompt_version="1",
            prompt_sha256="0" * 64,
            baseline="base model",
            results={"tgt": win("de", 13 - seed, 2, 5 + seed), "en": win("en", 9, 4, 7)},
            samples=[],
        ),
        versus_base=versus_base(seed),
    )
    return report.model_dump(mode="json")


RATE_FIELDS_1_1 = (
    "pass_rate_interval",
    "usable",
    "undecided",
    "usable_rate",
    "usable_interval",
    "failure_reasons",
    "primary_failure_reasons",
)


def legacy_report(seed: int = 0) -> dict[str, Any]:
    """The report as a job written before schema 1.1 stored it: no base model, no prompt
    sources, no answer verdicts or intervals (what an older job's GET /evaluation returns)."""
    report = evaluation_report(seed)
    report["schema_version"] = "1.0"
    del report["versus_base"], report["prompt_sources"]
    language = report["language"]
    del language["verdict_version"], language["answer_verdicts"]
    for rate in (language["target_prompts"], language["english_prompts"]):
        for name in RATE_FIELDS_1_1:
            del rate[name]
    for sample in language["samples"]:
        del sample["usable"], sample["reasons"], sample["source"]
    EvaluationReport.model_validate(report)  # still a report clo loads
    return report
