"""What a job's evaluation needs from the service: the configured judge and the baseline bundle.

Resolved before any GPU time is spent, so a missing judge or an unusable baseline fails the
job at once with an error naming the field, not after training.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from clo.errors import CloError
from persistence.artifact_store import ArtifactStore
from persistence.db import session_scope
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import jobs as jobs_repo
from persistence.settings import Settings

logger = logging.getLogger(__name__)

# The bundle archives a job stores, adapter first (see runner._store_results).
BUNDLE_ARTIFACTS = ("adapter.tar", "model.tar")


class EvaluationSetupError(CloError):
    """The job's evaluation options cannot be served by this worker."""

    def __init__(self, code: str, message: str, param: str) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


def judge_env(spec: Any, settings: Settings) -> Any:
    """The clo JudgeEnv for spec.evaluation.judge ("none": None)."""
    from clo.pipeline import JudgeEnv

    kind = spec.evaluation.judge
    if kind == "none" or not spec.evaluation.enabled:
        return None
    if not settings.judge_model or (kind == "openai" and not settings.judge_url):
        raise EvaluationSetupError(
            "judge_not_configured",
            f"evaluation.judge is {kind!r} but this service has no such judge configured "
            "(CLO_JUDGE_MODEL" + (", CLO_JUDGE_URL)" if kind == "openai" else ")"),
            "evaluation.judge",
        )
    if kind == "openai":
        key = settings.judge_api_key.get_secret_value() if settings.judge_api_key else None
        return JudgeEnv(
            kind="openai", model=settings.judge_model, url=settings.judge_url, api_key=key
        )
    entry = settings.resolve_model(settings.judge_model, "causal_lm")
    if entry is None:
        raise EvaluationSetupError(
            "judge_not_configured",
            f"the local judge {settings.judge_model!r} (CLO_JUDGE_MODEL) is not an "
            "allow-listed causal LM",
            "evaluation.judge",
        )
    return JudgeEnv(kind="local", model=entry.source, revision=entry.revision)


def baseline_bundle(
    spec: Any,
    tenant_id: uuid.UUID,
    workdir: Path,
    settings: Settings,
    factory: sessionmaker[Session],
) -> tuple[Path, str] | None:
    """Unpack the baseline job's bundle into workdir/baseline; (folder, report name) or None."""
    raw = spec.evaluation.baseline_job_id
    if raw is None or spec.evaluation.judge == "none" or not spec.evaluation.enabled:
        return None  # only the judge uses a baseline
    param = "evaluation.baseline_job_id"
    try:
        job_id = uuid.UUID(raw)
    except ValueError:
        raise EvaluationSetupError(
            "baseline_job_not_found", f"{raw!r} is not a job id", param
        ) from None
    with session_scope(factory) as session:
        job = jobs_repo.get_job_for_tenant(session, tenant_id, job_id)
        if job is None or job.status != "succeeded":
            state = "not found" if job is None else f"is {job.status}, not succeeded"
            raise EvaluationSetupError(
                "baseline_job_not_usable", f"baseline job {raw} {state}", param
            )
        if job.base_model != spec.base_model:
            raise EvaluationSetupError(
                "baseline_job_not_usable",
                f"baseline job {raw} was trained on {job.base_model!r}, this job on "
                f"{spec.base_model!r}; compare jobs of one base model",
                param,
            )
        found = [artifacts_repo.get_artifact(session, job_id, n) for n in BUNDLE_ARTIFACTS]
        artifact = next((a for a in found if a is not None), None)
        key = artifact.key if artifact is not None else None
        label = f"job {raw} ({job.method})"
    if key is None:
        raise EvaluationSetupError(
            "baseline_job_not_usable", f"baseline job {raw} has no stored bundle", param
        )
    target = workdir / "baseline"
    if not (target / ".complete").is_file():
        _unpack(ArtifactStore(settings.artifact_root), key, target)
    return target, label


def _unpack(store: ArtifactStore, key: str, target: Path) -> None:
    """Extract a bundle tar (safely: no links, nothing outside target), then mark it done."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.mkdir(parents=True)
    with store.open(key) as fh, tarfile.open(fileobj=fh, mode="r:") as tar:
        tar.extractall(partial, filter="data")
    (partial / ".complete").write_text("")
    partial.replace(target)
    logger.info("baseline bundle %s unpacked to %s", key, target)
