"""Resolve a job spec once: every rule a spec must pass, every default filled, in one place.

`resolve_job(spec, catalog)` checks the spec against what a deployment has (allow-listed
models, uploaded files, earlier jobs, the configured judge), fills every default
(language code, trainable, the training config) and returns a `ResolvedJob`. The API
resolves at submission and stores the result with the job; the worker runs from the
stored `ResolvedJob` and only does I/O; `clo run` resolves against `LocalCatalog`.
Every refusal is a `CloError` with a `code` from docs/ERRORS.md and the `param` at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from clo.config import TrainConfig
from clo.errors import CloError
from clo.languages import UnknownLanguageError, match_language, recommended_trainable
from clo.seed import builtin_parallel, builtin_seed_size, load_jsonl
from clo.spec import MIN_DATA_SIZE, EvaluationSpec, JobSpec

ModelKind = Literal["causal_lm", "translator"]
RESOLVED_VERSION = 1
BASELINE_PARAM = "evaluation.baseline_job_id"


class ModelRef(BaseModel):
    """An allow-listed model: the name the client used and where it loads from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str  # hub id or local folder
    revision: str | None = None


class SeedFileRef(BaseModel):
    """An uploaded seed file: its id, where its bytes are stored, and its size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file_id: str
    key: str
    n_examples: int


class BaselineRef(BaseModel):
    """Another job whose bundle the judge compares against."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    label: str  # how the report names it
    bundle_key: str | None  # the stored bundle archive (None: nothing for a judge to read)


class JudgeRef(BaseModel):
    """The judge the deployment configured (never its secret: the worker adds that)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["openai", "local"]
    model: str  # the endpoint's model name, or a local folder / hub id
    url: str | None = None
    revision: str | None = None


@dataclass(frozen=True)
class BaselineJob:
    """What the catalog knows of a job named as a baseline."""

    job_id: str
    status: str
    base_model: str
    method: str
    bundle_key: str | None


class Catalog(Protocol):
    """What a deployment offers; the service implements it over its settings and database."""

    def model(self, name: str, kind: ModelKind) -> ModelRef | None: ...

    def model_names(self, kind: ModelKind) -> list[str]: ...

    def seed_file(self, file_id: str) -> SeedFileRef | None: ...

    def baseline_job(self, job_id: str) -> BaselineJob | None: ...

    def judge(self, kind: Literal["openai", "local"]) -> JudgeRef | None: ...

    def default_translator(self) -> str | None:
        """The translator a job that names none gets; None: the spec's own default."""
        ...

    def max_gpus(self) -> int:
        """The most GPUs (training processes) one job may ask for: a worker node's count."""
        ...


class ResolvedJob(BaseModel):
    """A spec with every name resolved and every default filled: what a run needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = RESOLVED_VERSION
    spec: JobSpec  # target_language normalised, trainable filled
    base_model: ModelRef
    translator: ModelRef | None = None  # None for seed_data.source == "parallel"
    seed_file: SeedFileRef | None = None
    baseline: BaselineRef | None = None
    judge: JudgeRef | None = None
    train: TrainConfig
    # What of the typed target_language the registry cannot represent ("zh-Hant": the
    # script), so the run and the client can say what is trained instead; None: exact.
    language_note: str | None = None
    # Training memory on one GPU (clo.memory_estimate), filled by the service at submission
    # where the fleet has GPU classes (service.gpu_routing); None: not estimated.
    memory_estimate_bytes: int | None = None


def resolve_job(spec: JobSpec, catalog: Catalog) -> ResolvedJob:
    """Check `spec` against `catalog` and fill its defaults; raises CloError (code, param)."""
    try:
        match = match_language(spec.target_language)
    except UnknownLanguageError as exc:
        raise CloError(str(exc), code="unknown_language", param="target_language") from None
    language = match.language
    if language.code == "en":  # "en-US", "eng": JobSpec only sees the literal "en"
        raise CloError(
            f"target_language {spec.target_language!r} is English: CLO transfers *from* English",
            code="validation_error",
            param="target_language",
        )
    base = _allowed(catalog, spec.base_model, "causal_lm", "base_model")
    translator = None
    translator_spec = spec.translator
    if spec.seed_data.source != "parallel":
        translator = _translator(spec, catalog)
        translator_spec = spec.translator.model_copy(update={"model": translator.name})
    seed_file = _check_data_size(spec, catalog, language.code)
    evaluation = _evaluation(spec)
    judge = _judge(spec, catalog)
    baseline = _baseline(spec, catalog, needs_bundle=judge is not None)
    trainable = spec.trainable or recommended_trainable(language.code)
    _check_lora_fields(spec, trainable)
    _check_gpus(spec, trainable, catalog.max_gpus())
    # The stored spec names the translator and held-out size actually used, so a later
    # resolution (the worker's, for old rows) sees them as set and cannot pick others.
    filled = spec.model_copy(
        update={
            "target_language": language.code,
            "trainable": trainable,
            "translator": translator_spec,
            "evaluation": evaluation,
        }
    )
    return ResolvedJob(
        spec=filled,
        base_model=base,
        translator=translator,
        seed_file=seed_file,
        baseline=baseline,
        judge=judge,
        train=train_config(filled),
        language_note=match.note,
    )


def train_config(spec: JobSpec) -> TrainConfig:
    """The TrainConfig a spec asks for (trainable None -> the language's recommendation)."""
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


_LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout")


def _check_lora_fields(spec: JobSpec, trainable: str) -> None:
    """A LoRA shape other than the default on a job that trains no LoRA would be ignored
    silently; refuse it. Compared with the defaults (not `model_fields_set`) so a stored,
    filled spec resolves again unchanged."""
    if trainable == "lora":
        return
    hp = spec.hyperparameters
    for name in _LORA_FIELDS:
        if getattr(hp, name) != type(hp).model_fields[name].default:
            raise CloError(
                f"hyperparameters.{name} applies to trainable 'lora' only; this job trains "
                f"{trainable!r} (set trainable to 'lora' or leave {name} out)",
                code="hyperparameter_not_applicable",
                param=f"hyperparameters.{name}",
            )


def _check_gpus(spec: JobSpec, trainable: str, max_gpus: int) -> None:
    """`gpus` against what a worker node owns; the global micro-batch must split evenly over
    them (each rank forwards its equal share: the result does not depend on `gpus`)."""
    gpus, hp = spec.gpus, spec.hyperparameters
    if gpus > max_gpus:
        raise CloError(
            f"gpus {gpus} is more than a worker of this service owns ({max_gpus}, "
            "CLO_WORKER_GPUS); ask for at most that many",
            code="too_many_gpus",
            param="gpus",
        )
    if hp.batch_size % gpus:
        raise CloError(
            f"hyperparameters.batch_size {hp.batch_size} (the global micro-batch) does not "
            f"split evenly over {gpus} GPUs; use a multiple of {gpus}",
            code="batch_size_not_divisible",
            param="gpus",
        )
    if gpus > 1 and trainable == "full" and hp.optimizer == "adamw_8bit":
        raise CloError(
            "optimizer 'adamw_8bit' keeps whole-tensor 8-bit state, which FSDP2's sharded "
            "parameters (trainable 'full' over several GPUs) do not support; use 'adamw' "
            "(sharding already divides its state by the GPU count) or gpus 1",
            code="optimizer_unavailable",
            param="hyperparameters.optimizer",
        )


def _allowed(catalog: Catalog, name: str, kind: ModelKind, param: str) -> ModelRef:
    ref = catalog.model(name, kind)
    if ref is None:
        names = catalog.model_names(kind)
        raise CloError(
            f"{param} {name!r} is not on the allow-list; allowed: "
            f"{', '.join(names) or 'none configured'} (GET /v1/models)",
            code="model_not_allowed",
            param=param,
        )
    return ref


def _translator(spec: JobSpec, catalog: Catalog) -> ModelRef:
    """The translator the client named, or the deployment's default when it named none:
    a first job should not fail on a field its author never set."""
    if "model" in spec.translator.model_fields_set:
        return _allowed(catalog, spec.translator.model, "translator", "translator.model")
    name = catalog.default_translator() or spec.translator.model
    ref = catalog.model(name, "translator")
    if ref is None:
        names = catalog.model_names("translator")
        raise CloError(
            f"this job needs a translator and the service's default {name!r} is not on the "
            f"allow-list; allowed: {', '.join(names) or 'none configured'} (GET /v1/models). "
            "Name one in translator.model, use seed_data.source 'parallel', or ask the "
            "operator to allow-list a translator (CLO_MODELS, kind 'translator') or set "
            "CLO_DEFAULT_TRANSLATOR",
            code="model_not_allowed",
            param="translator.model",
        )
    return ref


def _evaluation(spec: JobSpec) -> EvaluationSpec:
    """The evaluation with its held-out size: an explicit size must leave MIN_DATA_SIZE
    examples for training; the default shrinks to fit small data (0: no held-out set)."""
    evaluation = spec.evaluation
    if not evaluation.enabled:
        return evaluation
    room = spec.data_size - MIN_DATA_SIZE
    if "heldout_size" not in evaluation.model_fields_set:
        return evaluation.model_copy(
            update={"heldout_size": max(0, min(evaluation.heldout_size, room))}
        )
    if evaluation.heldout_size > room:
        raise CloError(
            f"evaluation.heldout_size {evaluation.heldout_size} leaves fewer than "
            f"{MIN_DATA_SIZE} of the {spec.data_size} examples for training; ask for at "
            f"most {max(room, 0)}, or leave it unset to size it to the data",
            code="heldout_too_large",
            param="evaluation.heldout_size",
        )
    return evaluation


def _check_data_size(spec: JobSpec, catalog: Catalog, lang: str) -> SeedFileRef | None:
    """data_size against what the seed source holds; the uploaded file when source=file."""
    source = spec.seed_data.source
    seed_file = None
    available: int | None = None
    if source == "builtin":
        available = builtin_seed_size()
    elif source == "parallel":
        try:
            available = len(builtin_parallel(lang))
        except CloError as exc:
            raise CloError(str(exc), code="no_parallel_data", param="seed_data.source") from None
    elif source == "file":
        seed_file = catalog.seed_file(spec.seed_data.file_id or "")
        if seed_file is None:
            raise CloError(
                f"file {spec.seed_data.file_id!r} not found; upload it with POST /v1/files",
                code="file_not_found",
                param="seed_data.file_id",
            )
        available = seed_file.n_examples
    # oasst1: selected when the job runs; a short selection fails the job clearly then.
    if available is not None and spec.data_size > available:
        raise CloError(
            f"data_size {spec.data_size} is larger than the {available} examples in the "
            f"{source} seed set; ask for at most {available}",
            code="data_size_too_large",
            param="data_size",
        )
    return seed_file


def _judge(spec: JobSpec, catalog: Catalog) -> JudgeRef | None:
    kind = spec.evaluation.judge
    if kind == "none" or not spec.evaluation.enabled:
        return None
    judge = catalog.judge(kind)
    if judge is None:
        raise CloError(
            f"evaluation.judge {kind!r} is not configured on this service; ask the "
            "operator to set CLO_JUDGE_MODEL"
            + (" and CLO_JUDGE_URL" if kind == "openai" else " to an allow-listed model")
            + ", or use judge 'none'",
            code="judge_not_configured",
            param="evaluation.judge",
        )
    return judge


def _baseline(spec: JobSpec, catalog: Catalog, needs_bundle: bool) -> BaselineRef | None:
    """The baseline job must be this tenant's succeeded job on the same base model; only
    a judge reads its bundle, so only then must it have one."""
    job_id = spec.evaluation.baseline_job_id
    if job_id is None:
        return None
    job = catalog.baseline_job(job_id)
    if job is None:
        raise CloError(
            f"baseline job {job_id!r} not found",
            code="baseline_job_not_found",
            param=BASELINE_PARAM,
        )
    if job.status != "succeeded":
        raise CloError(
            f"baseline job {job_id} is {job.status}; only a succeeded job has a "
            "model to compare against",
            code="baseline_job_not_succeeded",
            param=BASELINE_PARAM,
        )
    if job.base_model != spec.base_model:
        raise CloError(
            f"baseline job {job_id} was trained on {job.base_model!r}, not "
            f"{spec.base_model!r}; its adapter only fits its own base model",
            code="baseline_job_other_model",
            param=BASELINE_PARAM,
        )
    if job.bundle_key is None and needs_bundle:
        raise CloError(
            f"baseline job {job_id} has no stored bundle",
            code="baseline_job_no_bundle",
            param=BASELINE_PARAM,
        )
    return BaselineRef(
        job_id=job.job_id, label=f"job {job.job_id} ({job.method})", bundle_key=job.bundle_key
    )


class LocalCatalog:
    """The library's catalog for `clo run`: a model is named by its folder or hub id, a
    seed file by its path; there are no earlier jobs and no judge. `max_gpus`: the most
    training processes a job may ask for (default 64, the spec's bound)."""

    _max_gpus = 64  # a class default: subclasses with their own __init__ keep it

    def __init__(self, max_gpus: int = 64) -> None:
        self._max_gpus = max_gpus

    def model(self, name: str, kind: ModelKind) -> ModelRef | None:
        return ModelRef(name=name, source=name)

    def model_names(self, kind: ModelKind) -> list[str]:
        return []

    def seed_file(self, file_id: str) -> SeedFileRef | None:
        path = Path(file_id)
        if not path.is_file():
            return None
        return SeedFileRef(file_id=file_id, key=str(path), n_examples=len(load_jsonl(path)))

    def baseline_job(self, job_id: str) -> BaselineJob | None:
        return None

    def judge(self, kind: Literal["openai", "local"]) -> JudgeRef | None:
        return None

    def default_translator(self) -> str | None:
        return None

    def max_gpus(self) -> int:
        # `clo run` on one machine: a CPU run may use several gloo processes (tests, trials)
        return self._max_gpus
