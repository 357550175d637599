"""The recipe of a job: translate -> train -> evaluate -> package.

Each stage reads and writes only inside `workdir` and skips work whose output is already
there, so a job resumed after a crash continues where it stopped (the trainer resumes from
its own checkpoints inside the training stage). The worker and `clo run` both call
`run_pipeline` with a `ResolvedJob` (clo.resolve) and the local inputs it needs.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clo import seed
from clo.atomic_dir import link_tree, read_json, write_json_atomic
from clo.checksum import sha256_file, write_sha256sums
from clo.errors import CloError, Stopped
from clo.evaluate.base_cache import BaseResultCache
from clo.evaluate.card import write_model_card
from clo.evaluate.job import evaluate_export
from clo.events import Event, EventHook, Stage, StageStarted, StepDone, from_callback
from clo.export import export_adapter, export_merged
from clo.loading import device_option, free_memory, load_model_and_tokenizer
from clo.oasst import load_oasst1
from clo.pairs import Quadruple, read_quadruples, split_heldout, write_quadruples
from clo.resolve import ResolvedJob
from clo.trainer import train
from clo.translate import TranslatorConfig, make_translator, translate_seed
from clo.translate.cache import FileTranslationCache, TranslationCache

logger = logging.getLogger(__name__)

PIPELINE_VERSION = 1
STAGES = ("translating", "training", "evaluating", "packaging")
Callback = Callable[[dict[str, Any]], None]


def _no_progress(event: Event) -> None:
    return None


def _never_stop() -> bool:
    return False


@dataclass
class PipelineHooks:
    """progress(event) with a clo.events Event after each step/batch; should_stop() checked
    once per step/batch."""

    progress: EventHook = _no_progress
    should_stop: Callable[[], bool] = _never_stop


@dataclass(frozen=True)
class RunInputs:
    """What a run reads from this machine (the caller fetched it): no rules, only I/O."""

    seed_file: Path | None = None  # the uploaded JSONL, for seed_data.source == "file"
    oasst_path: Path | None = None  # a local oasst1 export, for seed_data.source == "oasst1"
    translation_cache: TranslationCache | None = None  # None: a file cache in workdir
    device: str = "auto"
    # translation engine of this machine: transformers | ctranslate2 (clo/translate/ct2.py)
    translator_backend: str = "transformers"
    translator_compute_type: str = "auto"  # ctranslate2 only: float32, int8, ...
    judge_api_key: str | None = field(default=None, repr=False)  # never logged
    baseline_dir: Path | None = None  # an unpacked bundle (adapter or model) the judge reads
    base_cache: BaseResultCache | None = None  # base model's evaluation results; None: none


@dataclass
class PipelineResult:
    bundle_dir: Path
    merged_dir: Path | None
    train_summary: dict[str, Any]
    evaluation: dict[str, Any] | None
    translation_report: dict[str, Any] = field(default_factory=dict)
    bundle_kind: str = "adapter"  # "merged" for trainable=full: the bundle is a whole model


def _stage_started(hooks: PipelineHooks, stage: Stage, resumed: bool = False) -> None:
    hooks.progress(StageStarted(stage=stage, resumed=resumed))


def _check_stop(hooks: PipelineHooks) -> None:
    if hooks.should_stop():
        raise Stopped("stopped on request")


def _within_stage(hooks: PipelineHooks, stage: Stage) -> Callback:
    """A library function's per-step callback, reported as `stage`'s typed events."""

    def progress(raw: dict[str, Any]) -> None:
        event = from_callback(stage, raw)
        if event is not None:
            hooks.progress(event)

    return progress


# ---- translate -----------------------------------------------------------------------


def _seed_examples(resolved: ResolvedJob, inputs: RunInputs) -> list[seed.SeedExample]:
    spec = resolved.spec
    source = spec.seed_data.source
    if source == "builtin":
        examples = seed.builtin_seed()
    elif source == "file":
        if inputs.seed_file is None:
            raise CloError(
                "seed_data.source is 'file' but no file was provided", param="seed_data.file_id"
            )
        examples = seed.load_jsonl(inputs.seed_file)
    else:  # oasst1 ("parallel" never reaches here)
        examples = load_oasst1(spec.data_size, path=inputs.oasst_path)
    if len(examples) < spec.data_size:
        raise CloError(
            f"data_size {spec.data_size} is larger than the {len(examples)} examples of seed "
            f"source '{source}'; lower data_size or provide more seed data",
            code="data_size_too_large",
            param="data_size",
        )
    return list(examples[: spec.data_size])


def stage_translate(
    resolved: ResolvedJob, workdir: Path, hooks: PipelineHooks, inputs: RunInputs
) -> tuple[Path, dict[str, Any]]:
    """Seed examples -> quadruples (x_en, y_en, x_tgt, y_tgt) in translate/quadruples.jsonl."""
    spec = resolved.spec
    out_dir = workdir / "translate"
    quads_path, report_path = out_dir / "quadruples.jsonl", out_dir / "report.json"
    if report_path.exists() and quads_path.exists():
        _stage_started(hooks, "translating", resumed=True)
        return quads_path, dict(read_json(report_path))
    _stage_started(hooks, "translating")
    if spec.seed_data.source == "parallel":
        quads = seed.builtin_parallel(spec.target_language)
        if len(quads) < spec.data_size:
            raise CloError(
                f"data_size {spec.data_size} is larger than the {len(quads)} hand-translated "
                f"examples shipped for '{spec.target_language}'",
                code="data_size_too_large",
                param="data_size",
            )
        quads = quads[: spec.data_size]
        report: dict[str, Any] = {"source": "parallel", "kept": len(quads), "model_calls": 0}
        hooks.progress(StepDone(stage="translating", step=len(quads), total_steps=len(quads)))
    else:
        quads, report = _machine_translate(resolved, workdir, hooks, inputs)
    _check_stop(hooks)
    if not quads:
        raise CloError(
            "no example survived translation quality checks; try another "
            "translator or translator.quality_check='off'",
            code="translation_failed",
            param="translator",
        )
    write_quadruples(quads_path, quads)
    write_json_atomic(report_path, report)
    return quads_path, report


def _machine_translate(
    resolved: ResolvedJob, workdir: Path, hooks: PipelineHooks, inputs: RunInputs
) -> tuple[list[Quadruple], dict[str, Any]]:
    spec, mt = resolved.spec, resolved.translator
    if mt is None:
        raise CloError("no translation model configured", param="translator.model")
    examples = _seed_examples(resolved, inputs)
    config = TranslatorConfig.model_validate(
        {
            "model": mt.source,
            "revision": mt.revision,
            "device": inputs.device,
            "quality_check": spec.translator.quality_check,
            "decoding": {"num_beams": spec.translator.num_beams},
            "backend": inputs.translator_backend,
            "compute_type": inputs.translator_compute_type,
        }
    )
    cache = inputs.translation_cache or FileTranslationCache(workdir / "translate")
    result = translate_seed(
        examples,
        spec.target_language,
        make_translator(config),
        cache,
        progress=_within_stage(hooks, "translating"),
        should_stop=hooks.should_stop,
    )
    return list(result.quadruples), dict(result.report)


# ---- train ---------------------------------------------------------------------------


def heldout_count(resolved: ResolvedJob, n: int) -> int:
    """Examples held out for evaluation; none when evaluation is off."""
    evaluation = resolved.spec.evaluation
    if not evaluation.enabled or evaluation.heldout_size == 0:
        return 0
    if evaluation.heldout_size >= n:
        raise CloError(
            f"evaluation.heldout_size {evaluation.heldout_size} leaves no training data out of "
            f"{n} examples; lower it or raise data_size",
            code="heldout_too_large",
            param="evaluation.heldout_size",
        )
    return evaluation.heldout_size


def stage_train(
    resolved: ResolvedJob, workdir: Path, hooks: PipelineHooks, inputs: RunInputs, quads: Path
) -> tuple[Path, dict[str, Any]]:
    """Train on the non-held-out quadruples and export the result under train/.

    Writes train/adapter (stock PEFT; lora or attention-only) or, for trainable=full,
    train/model (a full model); train/merged too when the spec asks for a merged copy.
    Returns (the exported folder, the training summary).
    """
    out_dir = workdir / "train"
    config, base = resolved.train, resolved.base_model
    exported = out_dir / ("model" if config.trainable == "full" else "adapter")
    summary_path = out_dir / "summary.json"
    if summary_path.exists() and exported.is_dir():
        _stage_started(hooks, "training", resumed=True)
        return exported, dict(read_json(summary_path))
    _stage_started(hooks, "training")
    all_quads = read_quadruples(quads)
    held = heldout_count(resolved, len(all_quads))
    train_quads, heldout = split_heldout(all_quads, size=held, seed=config.seed)
    write_quadruples(out_dir / "heldout.jsonl", heldout)
    if resolved.spec.gpus > 1:
        # torchrun over the worker's GPUs (gloo processes on CPU); the model comes back
        # in-process with the trained weights, as train() leaves it (clo.distributed_stage)
        from clo.distributed_stage import train_over_ranks

        result, tokenizer = train_over_ranks(
            base.source,
            base.revision,
            train_quads,
            config,
            out_dir,
            resolved.spec.gpus,
            progress=_within_stage(hooks, "training"),
            should_stop=hooks.should_stop,
            device=device_option(inputs.device),
        )
        model = result.model
    else:
        model, tokenizer = load_model_and_tokenizer(
            base.source, revision=base.revision, device=device_option(inputs.device)
        )
        result = train(
            model,
            tokenizer,
            train_quads,
            config,
            out_dir,
            progress=_within_stage(hooks, "training"),
            should_stop=hooks.should_stop,
            reference_cache_dir=out_dir / "reference",
        )
    summary: dict[str, Any] = {
        **{k: v for k, v in result.metrics.items() if isinstance(v, int | float)},
        "train_examples": len(train_quads),
        "heldout_examples": len(heldout),
        "trainable": config.trainable,
        "truncation": result.truncation,
        # precision trained in, packed prompts, the gradient-checkpointing choice
        **result.runtime,
    }
    meta: dict[str, Any] = dict(
        config=config,
        base_model=base.source,
        base_revision=base.revision,
        data_hash=sha256_file(quads),
        metrics=summary,
    )
    if resolved.spec.export_merged and config.trainable != "full":
        export_merged(result.model, tokenizer, out_dir / "merged", **meta)
    if config.trainable == "full":
        export_merged(result.model, tokenizer, exported, **meta)
    else:
        export_adapter(result.model, tokenizer, exported, **meta)
    write_json_atomic(summary_path, summary)
    del model, result
    free_memory()
    for folder in ("checkpoints", "checkpoints-sharded"):  # the export supersedes them
        shutil.rmtree(out_dir / folder, ignore_errors=True)
    return exported, summary


# ---- evaluate ------------------------------------------------------------------------


def stage_evaluate(
    resolved: ResolvedJob, workdir: Path, hooks: PipelineHooks, inputs: RunInputs, exported: Path
) -> dict[str, Any] | None:
    """Score the exported model on the held-out quadruples (clo.evaluate.job).

    None when evaluation is off or nothing was held out.
    """
    out = workdir / "evaluate" / "report.json"
    heldout_path = workdir / "train" / "heldout.jsonl"
    if out.exists():
        _stage_started(hooks, "evaluating", resumed=True)
        return dict(read_json(out))
    heldout = read_quadruples(heldout_path) if heldout_path.exists() else []
    if not resolved.spec.evaluation.enabled or not heldout:
        return None
    _stage_started(hooks, "evaluating")
    data = evaluate_export(
        resolved,
        exported,
        heldout,
        device=device_option(inputs.device),
        baseline_dir=inputs.baseline_dir,
        base_cache=inputs.base_cache,
        judge_api_key=inputs.judge_api_key,
        progress=_within_stage(hooks, "evaluating"),
        should_stop=hooks.should_stop,
    )
    write_json_atomic(out, data)
    return data


# ---- package -------------------------------------------------------------------------


def stage_package(
    resolved: ResolvedJob,
    workdir: Path,
    hooks: PipelineHooks,
    exported: Path,
    evaluation: dict[str, Any] | None,
    translation_report: dict[str, Any],
) -> tuple[Path, Path | None]:
    """The bundle: the export (weights, tokenizer, config, model card) + job config + reports.

    Returns (bundle folder, merged model folder or None).
    """
    out_dir = workdir / "package"
    bundle = out_dir / "bundle"
    merged = workdir / "train" / "merged"
    merged_dir = merged if merged.is_dir() else None
    if (bundle / "SHA256SUMS").is_file():
        _stage_started(hooks, "packaging", resumed=True)
        return bundle, merged_dir
    _stage_started(hooks, "packaging")
    tmp = out_dir / ".bundle.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    link_tree(exported, tmp)
    (tmp / "SHA256SUMS").unlink(missing_ok=True)
    heldout = workdir / "train" / "heldout.jsonl"
    if heldout.is_file():  # what a later LoRA extraction scores itself on (clo.lora_source)
        shutil.copy2(heldout, tmp / "heldout.jsonl")
    base, mt = resolved.base_model, resolved.translator
    write_json_atomic(
        tmp / "clo_job.json",
        {
            "pipeline_version": PIPELINE_VERSION,
            "spec": resolved.spec.model_dump(mode="json"),
            "base_model": {"name": base.name, "source": base.source, "revision": base.revision},
            "translator": {
                "source": mt.source if mt else None,
                "revision": mt.revision if mt else None,
            },
        },
    )
    write_json_atomic(tmp / "translation_report.json", translation_report)
    if evaluation is not None:
        write_json_atomic(tmp / "evaluation.json", evaluation)
    write_model_card(tmp, resolved, evaluation)  # language, base name, headline numbers
    write_sha256sums(tmp)  # written last: its presence marks a complete bundle
    shutil.rmtree(bundle, ignore_errors=True)
    os.replace(tmp, bundle)
    hooks.progress(StepDone(stage="packaging", step=1, total_steps=1))
    return bundle, merged_dir


def run_pipeline(
    resolved: ResolvedJob,
    workdir: Path,
    hooks: PipelineHooks | None = None,
    inputs: RunInputs | None = None,
) -> PipelineResult:
    """Run (or resume) every stage in order inside workdir."""
    hooks = hooks or PipelineHooks()
    inputs = inputs or RunInputs()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    quads, translation_report = stage_translate(resolved, workdir, hooks, inputs)
    _check_stop(hooks)
    exported, summary = stage_train(resolved, workdir, hooks, inputs, quads)
    _check_stop(hooks)
    evaluation = stage_evaluate(resolved, workdir, hooks, inputs, exported)
    _check_stop(hooks)
    bundle, merged = stage_package(
        resolved, workdir, hooks, exported, evaluation, translation_report
    )
    return PipelineResult(
        bundle_dir=bundle,
        merged_dir=merged,
        train_summary=summary,
        evaluation=evaluation,
        translation_report=translation_report,
        bundle_kind="adapter" if (bundle / "adapter_config.json").is_file() else "merged",
    )
