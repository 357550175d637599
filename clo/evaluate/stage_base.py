"""The base model's side of the evaluation stage: where its results come from, and the
versus_base section built from both models' results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from clo.errors import CloError
from clo.evaluate.base_cache import BaseResultCache
from clo.evaluate.base_side import BaseModelId, BaseOutputs
from clo.evaluate.config import EvalConfig
from clo.evaluate.language_section import LanguageResult
from clo.evaluate.preference import PreferenceScores, _is_peft
from clo.evaluate.prompt_sources import PromptSource
from clo.evaluate.report import BaseRun, VersusBaseReport
from clo.evaluate.versus_base import PairedData, Settings, paired_comparisons
from clo.pairs import Quadruple, preference_pairs


@dataclass
class BaseSide:
    """Where the base model's results come from, and the cache they are kept in.

    `outputs`: results already computed by a separately loaded base model (a full
    fine-tune, see clo.evaluate.job); without them a PEFT model's base is the model with its
    adapter disabled. `identity` names the base in the report and in cache keys (default:
    the adapter's base_model_name_or_path and revision).
    """

    identity: BaseModelId | None = None
    cache: BaseResultCache | None = None
    outputs: BaseOutputs | None = None


def resolve_base(
    model: Any, base: BaseSide | None, config: EvalConfig
) -> tuple[BaseSide | None, str]:
    """The base side to score, or None and why not."""
    if not config.compare_base:
        return None, "compare_base is off"
    if base is not None and base.outputs is not None:
        return base, ""
    if not _is_peft(model):
        return None, "no base model: the model is no adapter and no base results were given"
    side = base or BaseSide()
    if side.identity is None:
        cfg = next(iter(model.peft_config.values()))
        name = str(cfg.base_model_name_or_path)
        side = replace(side, identity=BaseModelId(name, name, getattr(cfg, "revision", None)))
    return side, ""


def concat_answers(
    sources: Sequence[PromptSource], outputs: BaseOutputs
) -> tuple[list[str], list[str]]:
    """Base answers in the order of the evaluated prompts (target, English)."""
    missing = [s.name for s in sources if s.name not in outputs.answers]
    if missing:
        raise CloError(f"base results lack answers to prompt source(s) {missing}")
    tgt = [a for s in sources for a in outputs.answers[s.name][0]]
    en = [a for s in sources for a in outputs.answers[s.name][1]]
    return tgt, en


def versus_base_report(
    side: BaseSide,
    peft_base: bool,
    outputs: BaseOutputs,
    languages: dict[str, LanguageResult],
    sources: Sequence[PromptSource],
    heldout: Sequence[Quadruple],
    scores: PreferenceScores,
    benchmarks: dict[str, tuple[list[bool], list[bool], bool]],
    config: EvalConfig,
) -> VersusBaseReport:
    """The versus_base section from what both models produced."""
    ranges, start = [], 0
    for src in sources:
        ranges.append((src.name, start, start + len(src.target)))
        start += len(src.target)
    nll: dict[str, tuple[list[tuple[float, int]], list[tuple[float, int]]]] = {}
    logp_acc: dict[str, tuple[list[bool], list[bool]]] = {}
    ref = scores.reference
    if ref is not None:
        for side_name, keys in (
            ("target", [(q.x_tgt, q.y_tgt) for q in heldout]),
            ("english", [(q.x_en, q.y_en) for q in heldout]),
        ):
            trained = [(scores.policy[k].logprob, scores.policy[k].tokens) for k in keys]
            nll[side_name] = (trained, [(ref[k], scores.policy[k].tokens) for k in keys])
        pairs = [p for q in heldout for p in preference_pairs(q)]
        for side_name, direction in (("target", "tgt"), ("english", "en")):
            mine = [p for p in pairs if p.direction == direction]
            logp_acc[side_name] = (
                [
                    scores.policy[(p.prompt, p.chosen)].logprob
                    > scores.policy[(p.prompt, p.rejected)].logprob
                    for p in mine
                ],
                [ref[(p.prompt, p.chosen)] > ref[(p.prompt, p.rejected)] for p in mine],
            )
    both = "trained" in languages and "base" in languages
    data = PairedData(
        trained_language=(
            {"target": languages["trained"].target, "english": languages["trained"].english}
            if both
            else {}
        ),
        base_language=(
            {"target": languages["base"].target, "english": languages["base"].english}
            if both
            else {}
        ),
        sources=ranges,
        nll=nll,
        logp_accuracy=logp_acc,
        benchmarks=benchmarks,
    )
    settings = Settings(resamples=config.bootstrap_resamples)
    metrics, by_source = paired_comparisons(data, settings)
    identity = side.identity or BaseModelId("base model")
    return VersusBaseReport(
        base=BaseRun(
            model=identity.name,
            source=identity.source,
            revision=identity.revision,
            how="adapter_disabled" if peft_base else "separate_model",
            cached=outputs.fully_cached,
            cache_hits=outputs.cache_hits,
            cache_misses=outputs.cache_misses,
            generated_answers=outputs.generated_answers,
            scored_benchmarks=outputs.scored_benchmarks,
        ),
        confidence=settings.confidence,
        bootstrap_resamples=settings.resamples,
        bootstrap_seed=settings.seed,
        metrics=metrics,
        by_source=by_source,
        language=languages["base"].section if "base" in languages else None,
    )
