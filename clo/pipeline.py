"""A whole job as four stages: translate -> train -> evaluate -> package.

Each stage reads and writes only inside `workdir` and skips work whose output is already
there, so a job resumed after a crash continues where it stopped (the trainer resumes from
its own checkpoints inside the training stage). The worker and `clo run` both call
`run_pipeline`; neither depends on the other.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clo.checksum import sha256_file, write_sha256sums
from clo.errors import CloError, Stopped
from clo.pairs import Quadruple
from clo.spec import JobSpec

logger = logging.getLogger(__name__)

PIPELINE_VERSION = 1
STAGES = ("translating", "training", "evaluating", "packaging")


def _no_progress(event: dict[str, Any]) -> None:
    return None


def _never_stop() -> bool:
    return False


@dataclass
class PipelineHooks:
    """progress(event) after each step/batch; should_stop() checked once per step/batch."""

    progress: Callable[[dict[str, Any]], None] = _no_progress
    should_stop: Callable[[], bool] = _never_stop


@dataclass(frozen=True)
class PipelineEnv:
    """What the spec's names resolve to on this machine (the caller resolves them)."""

    base_model: str  # local folder or hub id of the base causal LM
    base_model_revision: str | None = None
    translator_model: str | None = None  # local folder or hub id; unused for source=parallel
    translator_revision: str | None = None
    seed_file: Path | None = None  # the uploaded JSONL, for seed_data.source == "file"
    oasst_path: Path | None = None  # a local oasst1 export, for seed_data.source == "oasst1"
    translation_cache: Any = None  # a clo.translate TranslationCache; None: a file cache in workdir
    device: str = "auto"
    judge: JudgeEnv | None = None  # where the judge runs, for evaluation.judge != "none"
    baseline_dir: Path | None = None  # an unpacked bundle (adapter or model) the judge compares to
    baseline_name: str | None = None  # how the report names that baseline


@dataclass(frozen=True)
class JudgeEnv:
    """The judge the service configured: an OpenAI-compatible endpoint or a local causal LM."""

    kind: str  # "openai" | "local"
    model: str  # the endpoint's model name, or a local folder / hub id
    url: str | None = None  # base URL of the OpenAI-compatible API (openai only)
    api_key: str | None = field(default=None, repr=False)  # never logged
    revision: str | None = None  # pinned revision of a local judge from the hub


@dataclass
class PipelineResult:
    bundle_dir: Path
    merged_dir: Path | None
    metrics_summary: dict[str, Any]
    evaluation: dict[str, Any] | None
    translation_report: dict[str, Any] = field(default_factory=dict)
    bundle_kind: str = "adapter"  # "merged" for trainable=full: the bundle is a whole model


class PipelineError(CloError):
    """A job option that cannot work with the data or models at hand."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_input"):
        super().__init__(message)
        self.param = param
        self.code = code


# ---- small file helpers ---------------------------------------------------------------


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_quadruples(path: Path, quads: list[Quadruple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", encoding="utf-8") as out:
        for q in quads:
            out.write(json.dumps(q.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_quadruples(path: Path) -> list[Quadruple]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Quadruple.from_dict(json.loads(line)) for line in lines if line.strip()]


def _stage_started(hooks: PipelineHooks, stage: str, resumed: bool = False) -> None:
    hooks.progress({"stage": stage, "event": "stage_started", "resumed": resumed})


def _check_stop(hooks: PipelineHooks) -> None:
    if hooks.should_stop():
        raise Stopped("stopped on request")


# ---- stages ---------------------------------------------------------------------------


def _seed_examples(spec: JobSpec, env: PipelineEnv) -> list[Any]:
    from clo import seed

    source = spec.seed_data.source
    if source == "builtin":
        examples = seed.builtin_seed()
    elif source == "file":
        if env.seed_file is None:
            raise PipelineError(
                "seed_data.source is 'file' but no file was provided", "seed_data.file_id"
            )
        examples = seed.load_jsonl(env.seed_file)
    elif source == "oasst1":
        from clo.oasst import load_oasst1

        examples = load_oasst1(spec.data_size, path=env.oasst_path)
    else:  # pragma: no cover - "parallel" never reaches here
        raise PipelineError(f"unknown seed source {source!r}", "seed_data.source")
    if len(examples) < spec.data_size:
        raise PipelineError(
            f"data_size {spec.data_size} is larger than the {len(examples)} examples of seed "
            f"source '{source}'; lower data_size or provide more seed data",
            "data_size",
        )
    return list(examples[: spec.data_size])


def stage_translate(
    spec: JobSpec, workdir: Path, hooks: PipelineHooks, env: PipelineEnv
) -> tuple[Path, dict[str, Any]]:
    """Seed examples -> quadruples (x_en, y_en, x_tgt, y_tgt) in translate/quadruples.jsonl."""
    out_dir = workdir / "translate"
    quads_path, report_path = out_dir / "quadruples.jsonl", out_dir / "report.json"
    if report_path.exists() and quads_path.exists():
        _stage_started(hooks, "translating", resumed=True)
        return quads_path, read_json(report_path)
    _stage_started(hooks, "translating")
    if spec.seed_data.source == "parallel":
        from clo.seed import builtin_parallel

        quads = builtin_parallel(spec.target_language)
        if len(quads) < spec.data_size:
            raise PipelineError(
                f"data_size {spec.data_size} is larger than the {len(quads)} hand-translated "
                f"examples shipped for '{spec.target_language}'",
                "data_size",
            )
        quads = quads[: spec.data_size]
        report: dict[str, Any] = {"source": "parallel", "kept": len(quads), "model_calls": 0}
        hooks.progress({"stage": "translating", "step": len(quads), "total_steps": len(quads)})
    else:
        quads, report = _machine_translate(spec, workdir, hooks, env)
    _check_stop(hooks)
    if not quads:
        raise PipelineError(
            "no example survived translation quality checks; try another "
            "translator or translator.quality_check='off'",
            "translator",
        )
    write_quadruples(quads_path, quads)
    write_json_atomic(report_path, report)
    return quads_path, report


def _machine_translate(
    spec: JobSpec, workdir: Path, hooks: PipelineHooks, env: PipelineEnv
) -> tuple[list[Quadruple], dict[str, Any]]:
    from clo.translate import Translator, TranslatorConfig, translate_seed
    from clo.translate.cache import FileTranslationCache

    if env.translator_model is None:
        raise PipelineError("no translation model configured", "translator.model")
    examples = _seed_examples(spec, env)
    config = TranslatorConfig.model_validate(
        {
            "model": env.translator_model,
            "revision": env.translator_revision,
            "device": env.device,
            "quality_check": spec.translator.quality_check,
            "decoding": {"num_beams": spec.translator.num_beams},
        }
    )
    cache = env.translation_cache or FileTranslationCache(workdir / "translate")
    translator = Translator(config)

    def progress(event: dict[str, Any]) -> None:
        hooks.progress({**event, "stage": "translating"})

    result = translate_seed(
        examples,
        spec.target_language,
        translator,
        cache,
        progress=progress,
        should_stop=hooks.should_stop,
    )
    return list(result.quadruples), dict(result.report)


def train_config(spec: JobSpec) -> Any:
    """The TrainConfig a spec asks for (trainable None -> the language's recommendation)."""
    from clo.config import TrainConfig
    from clo.languages import recommended_trainable

    hp = spec.hyperparameters
    return TrainConfig.model_validate(
        {
            **hp.model_dump(),
            "method": spec.method,
            "sft_variant": spec.sft_variant,
            "trainable": spec.trainable or recommended_trainable(spec.target_language),
            "max_prompt_length": min(256, hp.max_length // 2),
        }
    )


def heldout_count(spec: JobSpec, n: int) -> int:
    """Examples held out for evaluation; none when evaluation is off."""
    if not spec.evaluation.enabled or spec.evaluation.heldout_size == 0:
        return 0
    size = spec.evaluation.heldout_size
    if size >= n:
        raise PipelineError(
            f"evaluation.heldout_size {size} leaves no training data out of {n} examples; "
            "lower it or raise data_size",
            "evaluation.heldout_size",
        )
    return size


def _load_base(env: PipelineEnv) -> tuple[Any, Any]:
    from clo.loading import load_model_and_tokenizer

    device = None if env.device == "auto" else env.device
    return load_model_and_tokenizer(env.base_model, revision=env.base_model_revision, device=device)


def stage_train(
    spec: JobSpec, workdir: Path, hooks: PipelineHooks, env: PipelineEnv, quads_path: Path
) -> tuple[Path, dict[str, Any]]:
    """Train on the non-held-out quadruples and export the result under train/.

    Writes train/adapter (stock PEFT; lora or attention-only) or, for trainable=full,
    train/model (a full model); train/merged too when the spec asks for a merged copy.
    Returns (the exported folder, the metrics summary).
    """
    from clo.export import export_adapter, export_merged
    from clo.pairs import split_heldout
    from clo.trainer import train

    out_dir = workdir / "train"
    config = train_config(spec)
    exported = out_dir / ("model" if config.trainable == "full" else "adapter")
    summary_path = out_dir / "summary.json"
    if summary_path.exists() and exported.is_dir():
        _stage_started(hooks, "training", resumed=True)
        return exported, read_json(summary_path)
    _stage_started(hooks, "training")
    quads = read_quadruples(quads_path)
    held = heldout_count(spec, len(quads))
    train_quads, heldout = split_heldout(quads, size=held, seed=spec.hyperparameters.seed)
    write_quadruples(out_dir / "heldout.jsonl", heldout)
    model, tokenizer = _load_base(env)
    every = config.checkpoint_every

    def progress(event: dict[str, Any]) -> None:
        hooks.progress({**event, "stage": "training"})
        step = int(event.get("step", 0))
        # The trainer checkpoints right after reporting a multiple of checkpoint_every.
        if step > 1 and (step - 1) % every == 0:
            hooks.progress(
                {
                    "stage": "training",
                    "event": "checkpoint",
                    "step": step - 1,
                    "path": str(out_dir / "checkpoints"),
                    "message": f"checkpoint at step {step - 1}",
                }
            )

    result = train(
        model,
        tokenizer,
        train_quads,
        config,
        out_dir,
        progress=progress,
        should_stop=hooks.should_stop,
        reference_cache_dir=out_dir / "reference",
    )
    summary: dict[str, Any] = {
        **{k: v for k, v in result.metrics.items() if isinstance(v, int | float)},
        "train_examples": len(train_quads),
        "heldout_examples": len(heldout),
        "trainable": config.trainable,
        "truncation": result.truncation,
    }
    meta = dict(
        config=config,
        base_model=env.base_model,
        base_revision=env.base_model_revision,
        data_hash=sha256_file(quads_path),
        metrics=summary,
    )
    if spec.export_merged and config.trainable != "full":
        export_merged(result.model, tokenizer, out_dir / "merged", **meta)
    if config.trainable == "full":
        export_merged(result.model, tokenizer, exported, **meta)
    else:
        export_adapter(result.model, tokenizer, exported, **meta)
    write_json_atomic(summary_path, summary)
    del model, result
    _free_memory()
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # the export supersedes them
    return exported, summary


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def eval_config(spec: JobSpec) -> Any:
    """The EvalConfig a spec asks for."""
    from clo.evaluate import EvalConfig

    ev = spec.evaluation
    return EvalConfig(
        max_new_tokens=ev.max_new_tokens,
        benchmarks=list(ev.benchmarks),
        benchmark_source=ev.benchmark_source,
        benchmark_limit=ev.benchmark_limit,
    )


def stage_evaluate(
    spec: JobSpec, workdir: Path, hooks: PipelineHooks, env: PipelineEnv, exported: Path
) -> dict[str, Any] | None:
    """Score the exported model, loaded as a user would, on the held-out quadruples.

    Rewards need the base model as reference: an adapter bundle (lora, attention-only) gets
    it by disabling the adapter; a full model gets reference log-probs scored by the base
    model first, so only one model is in memory at a time. Baseline answers for the judge
    (another job's bundle, or the base model of a full model) are generated the same way.
    None when evaluation is off or nothing was held out.
    """
    out = workdir / "evaluate" / "report.json"
    heldout_path = workdir / "train" / "heldout.jsonl"
    if out.exists():
        _stage_started(hooks, "evaluating", resumed=True)
        return dict(read_json(out))
    heldout = read_quadruples(heldout_path) if heldout_path.exists() else []
    if not spec.evaluation.enabled or not heldout:
        return None
    _stage_started(hooks, "evaluating")
    from transformers import AutoTokenizer

    from clo.evaluate import Baseline, evaluate

    config = eval_config(spec)
    tokenizer = AutoTokenizer.from_pretrained(str(exported), trust_remote_code=False)
    wants_judge = spec.evaluation.judge != "none"
    is_adapter = (exported / "adapter_config.json").is_file()
    reference: dict[tuple[str, str], float] | None = None
    baseline: Baseline | None = None
    if not is_adapter:
        reference, base_answers = _score_with_base(
            env, tokenizer, heldout, config, answers=wants_judge and env.baseline_dir is None
        )
        if base_answers is not None:
            baseline = Baseline(name=f"base model {spec.base_model}", answers=base_answers)
    if wants_judge and env.baseline_dir is not None:
        _check_stop(hooks)
        baseline = Baseline(
            name=env.baseline_name or f"bundle {env.baseline_dir.name}",
            answers=_bundle_answers(env, env.baseline_dir, heldout, config),
        )
    _check_stop(hooks)
    judge = _make_judge(env) if wants_judge else None
    model = _load_exported(env, exported)

    def progress(event: dict[str, Any]) -> None:
        hooks.progress({**event, "stage": "evaluating"})

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
            should_stop=hooks.should_stop,
            model_name=spec.base_model,
        )
    finally:
        if judge is not None and hasattr(judge, "close"):
            judge.close()
    data = report.model_dump(mode="json")
    write_json_atomic(out, data)
    del model, judge
    _free_memory()
    return dict(data)


def _score_with_base(
    env: PipelineEnv, tokenizer: Any, heldout: list[Quadruple], config: Any, answers: bool
) -> tuple[dict[tuple[str, str], float], dict[str, str] | None]:
    """The base model's log-prob of every held-out (prompt, response), and its answers.

    Scored with the exported tokenizer and the evaluation's own lengths, so these are the
    exact reference terms of the rewards the evaluation computes for the trained model.
    """
    from clo.evaluate.scoring import score_texts
    from clo.pairs import preference_pairs

    seqs: dict[tuple[str, str], None] = {}
    for q in heldout:
        for pair in preference_pairs(q):
            seqs.setdefault((pair.prompt, pair.chosen), None)
            seqs.setdefault((pair.prompt, pair.rejected), None)
    keys = list(seqs)
    base, _ = _load_base(env)
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
        base_answers = _answers(base, tokenizer, heldout, config) if answers else None
    finally:
        del base
        _free_memory()
    logger.info("reference log-probs of %d held-out sequences scored by the base model", len(keys))
    return logps, base_answers


def _answers(model: Any, tokenizer: Any, heldout: list[Quadruple], config: Any) -> dict[str, str]:
    """Greedy answers to the target and English held-out prompts, generated as evaluate does."""
    from clo.evaluate.generation import generate_answers

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
    env: PipelineEnv, bundle: Path, heldout: list[Quadruple], config: Any
) -> dict[str, str]:
    """Answers of another job's bundle (adapter on this base model, or a whole model)."""
    from transformers import AutoTokenizer

    if not (bundle / "config.json").is_file() and not (bundle / "adapter_config.json").is_file():
        raise PipelineError(
            f"baseline bundle {bundle} holds neither an adapter nor a model",
            "evaluation.baseline_job_id",
        )
    model = _load_exported(env, bundle)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(bundle), trust_remote_code=False)
        return _answers(model, tokenizer, heldout, config)
    finally:
        del model
        _free_memory()


def _make_judge(env: PipelineEnv) -> Any:
    """The judge object for env.judge; an evaluation asking for one without it is an error."""
    from clo.evaluate import LocalJudge, OpenAIJudge

    judge = env.judge
    if judge is None:
        raise PipelineError(
            "evaluation.judge asks for a judge but none is configured on this worker",
            "evaluation.judge",
        )
    if judge.kind == "openai":
        if not judge.url:
            raise PipelineError("the OpenAI-compatible judge has no URL", "evaluation.judge")
        return OpenAIJudge(judge.url, judge.model, api_key=judge.api_key)
    if judge.kind == "local":
        from clo.loading import load_model_and_tokenizer

        device = None if env.device == "auto" else env.device
        model, tokenizer = load_model_and_tokenizer(
            judge.model, revision=judge.revision, device=device
        )
        return LocalJudge(model.eval(), tokenizer, name=judge.model)
    raise PipelineError(f"unknown judge kind {judge.kind!r}", "evaluation.judge")


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


def job_summary(
    summary: dict[str, Any], translation_report: dict[str, Any], evaluation: dict[str, Any] | None
) -> dict[str, Any]:
    """What the service stores as the job's metrics_summary: training numbers, the
    evaluation's headline numbers and the translation report (under "translation")."""
    return {**summary, **headline_metrics(evaluation), "translation": translation_report}


def _load_exported(env: PipelineEnv, exported: Path) -> Any:
    """The trained model from its export: base + adapter through stock PEFT, or the full model."""
    if (exported / "adapter_config.json").is_file():
        from peft import PeftModel

        base, _ = _load_base(env)
        return PeftModel.from_pretrained(base, str(exported)).eval()
    from clo.loading import load_model_and_tokenizer

    device = None if env.device == "auto" else env.device
    model, _ = load_model_and_tokenizer(exported, device=device)
    return model.eval()


def _link_tree(src: Path, dst: Path) -> None:
    """Copy a folder by hard links (exports are never modified), copying across devices."""

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link)


def stage_package(
    spec: JobSpec,
    workdir: Path,
    hooks: PipelineHooks,
    env: PipelineEnv,
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
    _link_tree(exported, tmp)
    (tmp / "SHA256SUMS").unlink(missing_ok=True)
    write_json_atomic(
        tmp / "clo_job.json",
        {
            "pipeline_version": PIPELINE_VERSION,
            "spec": spec.model_dump(mode="json"),
            "base_model": {
                "name": spec.base_model,
                "source": env.base_model,
                "revision": env.base_model_revision,
            },
            "translator": {"source": env.translator_model, "revision": env.translator_revision},
        },
    )
    write_json_atomic(tmp / "translation_report.json", translation_report)
    if evaluation is not None:
        write_json_atomic(tmp / "evaluation.json", evaluation)
    write_sha256sums(tmp)  # written last: its presence marks a complete bundle
    shutil.rmtree(bundle, ignore_errors=True)
    os.replace(tmp, bundle)
    hooks.progress({"stage": "packaging", "step": 1, "total_steps": 1})
    return bundle, merged_dir


def run_pipeline(
    spec: JobSpec, workdir: Path, hooks: PipelineHooks | None = None, env: PipelineEnv | None = None
) -> PipelineResult:
    """Run (or resume) every stage in order inside workdir."""
    hooks = hooks or PipelineHooks()
    if env is None:
        env = PipelineEnv(base_model=spec.base_model, translator_model=spec.translator.model)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    quads_path, translation_report = stage_translate(spec, workdir, hooks, env)
    _check_stop(hooks)
    exported, summary = stage_train(spec, workdir, hooks, env, quads_path)
    _check_stop(hooks)
    evaluation = stage_evaluate(spec, workdir, hooks, env, exported)
    _check_stop(hooks)
    bundle, merged = stage_package(
        spec, workdir, hooks, env, exported, evaluation, translation_report
    )
    kind = "adapter" if (bundle / "adapter_config.json").is_file() else "merged"
    return PipelineResult(
        bundle_dir=bundle,
        merged_dir=merged,
        metrics_summary=job_summary(summary, translation_report, evaluation),
        evaluation=evaluation,
        translation_report=translation_report,
        bundle_kind=kind,
    )
