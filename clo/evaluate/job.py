"""Evaluate a job's export as a user would load it: the reference, base, baseline and judge.

Rewards need the base model as reference, and every metric is reported beside the base
model's: an adapter bundle (lora, attention-only) gets the base by disabling the adapter; a
full model gets reference log-probs, base answers and base benchmark scores from the base
model loaded first, so only one model is in memory at a time. Base answers and benchmark
scores are looked up in the BaseResultCache first. Baseline answers for the judge (another
job's bundle; else the base model's answers) are generated the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from clo.errors import CloError, Stopped
from clo.evaluate.base_cache import BaseResultCache
from clo.evaluate.base_side import BaseModelId, BaseOutputs, collect_answers, collect_benchmark
from clo.evaluate.config import EvalConfig
from clo.evaluate.generation import generate_answers
from clo.evaluate.judge import Judge, LocalJudge, OpenAIJudge
from clo.evaluate.multiple_choice import BenchmarkDataError
from clo.evaluate.prompt_sources import evaluation_sources
from clo.evaluate.scoring import score_texts
from clo.evaluate.stage import Baseline, evaluate
from clo.evaluate.stage_base import BaseSide
from clo.languages import get_language
from clo.loading import free_memory, load_exported, load_model_and_tokenizer
from clo.pairs import Quadruple, preference_pairs
from clo.resolve import JudgeRef, ModelRef, ResolvedJob

logger = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


def eval_config(resolved: ResolvedJob) -> EvalConfig:
    """The EvalConfig a spec asks for."""
    ev = resolved.spec.evaluation
    return EvalConfig(
        max_new_tokens=ev.max_new_tokens,
        benchmarks=list(ev.benchmarks),
        benchmark_source=ev.benchmark_source,
        benchmark_limit=ev.benchmark_limit,
        prompt_set_limit=ev.prompt_set_limit,
    )


def evaluate_export(
    resolved: ResolvedJob,
    exported: Path,
    heldout: list[Quadruple],
    *,
    device: str | None,
    baseline_dir: Path | None = None,
    judge_api_key: str | None = None,
    progress: Progress,
    should_stop: Callable[[], bool],
    base_cache: BaseResultCache | None = None,
) -> dict[str, Any]:
    """The evaluation report (as stored JSON) of the exported model, beside its base model.

    `base_cache`: where base answers and benchmark scores are looked up and stored (keyed
    by base model, revision, prompts, decoding and evaluator version); None: no caching.
    """
    spec, base = resolved.spec, resolved.base_model
    config = eval_config(resolved)
    tokenizer = AutoTokenizer.from_pretrained(str(exported), trust_remote_code=False)
    wants_judge = resolved.judge is not None
    reference: dict[tuple[str, str], float] | None = None
    baseline: Baseline | None = None
    side = BaseSide(
        identity=BaseModelId(name=base.name, source=base.source, revision=base.revision),
        cache=base_cache,
    )
    if not (exported / "adapter_config.json").is_file():
        reference, side.outputs = _score_with_base(
            side, device, tokenizer, heldout, config, get_language(spec.target_language).code
        )
    if wants_judge and baseline_dir is not None:
        _check_stop(should_stop)
        label = resolved.baseline.label if resolved.baseline else f"bundle {baseline_dir.name}"
        baseline = Baseline(
            name=label, answers=_bundle_answers(base, device, baseline_dir, heldout, config)
        )
    _check_stop(should_stop)
    judge = make_judge(resolved.judge, judge_api_key, device) if resolved.judge else None
    model = load_exported(exported, base.source, base.revision, device)
    try:
        report = evaluate(
            model,
            tokenizer,
            heldout,
            spec.target_language,
            config,
            reference_model=reference,
            baseline=baseline,
            judge=judge,
            progress=progress,
            should_stop=should_stop,
            model_name=spec.base_model,
            base=side,
        )
    finally:
        close = getattr(judge, "close", None)
        if close is not None:
            close()
    data: dict[str, Any] = report.model_dump(mode="json")
    del model, judge
    free_memory()
    return data


def make_judge(ref: JudgeRef, api_key: str | None, device: str | None) -> Judge:
    """The judge object for a resolved judge."""
    if ref.kind == "openai":
        if not ref.url:
            raise CloError(
                "the OpenAI-compatible judge has no URL",
                code="judge_not_configured",
                param="evaluation.judge",
            )
        return OpenAIJudge(ref.url, ref.model, api_key=api_key)
    model, tokenizer = load_model_and_tokenizer(ref.model, revision=ref.revision, device=device)
    return LocalJudge(model.eval(), tokenizer, name=ref.model)


def _check_stop(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        raise Stopped("stopped on request")


def _score_with_base(
    side: BaseSide,
    device: str | None,
    tokenizer: Any,
    heldout: list[Quadruple],
    config: EvalConfig,
    target_code: str,
) -> tuple[dict[tuple[str, str], float], BaseOutputs]:
    """The base model's log-prob of every held-out (prompt, response), its answers to every
    prompt source and its benchmark scores (answers and scores from the cache when there).

    Scored with the exported tokenizer and the evaluation's own lengths, so these are the
    exact reference terms of the rewards the evaluation computes for the trained model.
    """
    ident = side.identity
    if ident is None or ident.source is None:
        raise CloError("a full model's evaluation needs the base model's source")
    seqs: dict[tuple[str, str], None] = {}
    for q in heldout:
        for pair in preference_pairs(q):
            seqs.setdefault((pair.prompt, pair.chosen), None)
            seqs.setdefault((pair.prompt, pair.rejected), None)
    keys = list(seqs)
    outputs = BaseOutputs()
    base, _ = load_model_and_tokenizer(ident.source, revision=ident.revision, device=device)
    try:
        scores = score_texts(
            base,
            tokenizer,
            [k[0] for k in keys],
            [k[1] for k in keys],
            batch_size=config.scoring_batch_size,
            max_length=config.max_length,
            max_prompt_length=config.max_prompt_tokens,
        )
        logps = {k: s.logprob for k, s in zip(keys, scores, strict=True)}
        if config.compare_base:
            kw: dict[str, Any] = {"identity": ident, "cache": side.cache, "disable_adapter": False}
            sources = evaluation_sources(target_code, heldout, config.prompt_set_limit)
            collect_answers(outputs, base, tokenizer, sources, config, **kw)
            langs = [target_code] + (["en"] if config.benchmark_english else [])
            for bench in config.benchmarks:
                for lang in langs:
                    try:
                        collect_benchmark(outputs, base, tokenizer, bench, lang, config, **kw)
                    except BenchmarkDataError:
                        pass  # the trained model's run records why it was skipped
    finally:
        del base
        free_memory()
    logger.info("reference log-probs of %d held-out sequences scored by the base model", len(keys))
    return logps, outputs


def _answers(
    model: Any, tokenizer: Any, heldout: list[Quadruple], config: EvalConfig
) -> dict[str, str]:
    """Greedy answers to the target and English held-out prompts, generated as evaluate does."""
    prompts = list(dict.fromkeys([q.x_tgt for q in heldout] + [q.x_en for q in heldout]))
    texts = generate_answers(
        model,
        tokenizer,
        prompts,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.generation_batch_size,
        max_prompt_tokens=config.max_prompt_tokens,
    )
    return dict(zip(prompts, texts, strict=True))


def _bundle_answers(
    base: ModelRef, device: str | None, bundle: Path, heldout: list[Quadruple], config: EvalConfig
) -> dict[str, str]:
    """Answers of another job's bundle (adapter on this base model, or a whole model)."""
    if not (bundle / "config.json").is_file() and not (bundle / "adapter_config.json").is_file():
        raise CloError(
            f"baseline bundle {bundle.name} holds neither an adapter nor a model",
            code="baseline_job_no_bundle",
            param="evaluation.baseline_job_id",
        )
    model = load_exported(bundle, base.source, base.revision, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(bundle), trust_remote_code=False)
        return _answers(model, tokenizer, heldout, config)
    finally:
        del model
        free_memory()
