"""What this deployment offers a tenant's job: the clo.resolve Catalog over settings and rows."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy.orm import Session

from clo.resolve import BaselineJob, JudgeRef, ModelKind, ModelRef, SeedFileRef
from clo.spec import TranslatorSpec
from persistence.repositories import artifacts as artifacts_repo
from persistence.repositories import files as files_repo
from persistence.repositories import jobs as jobs_repo
from persistence.settings import Settings

# The bundle archives a job stores, adapter first (see worker.job_io.store_results).
BUNDLE_ARTIFACTS = ("adapter.tar", "model.tar")


def as_uuid(value: str) -> uuid.UUID | None:
    """`value` as a UUID, or None when it is not one (a client-typed id)."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None


class ServiceCatalog:
    """The allow-list, the tenant's uploads and jobs, and the configured judge."""

    def __init__(self, session: Session, settings: Settings, tenant_id: uuid.UUID) -> None:
        self._session = session
        self._settings = settings
        self._tenant_id = tenant_id

    def model(self, name: str, kind: ModelKind) -> ModelRef | None:
        entry = self._settings.resolve_model(name, kind)
        if entry is None:
            return None
        return ModelRef(name=name, source=entry.source, revision=entry.revision)

    def model_names(self, kind: ModelKind) -> list[str]:
        allowed = self._settings.allowed_models().items()
        return sorted(name for name, entry in allowed if entry.kind == kind)

    def seed_file(self, file_id: str) -> SeedFileRef | None:
        parsed = as_uuid(file_id)
        if parsed is None:
            return None
        row = files_repo.get_file_for_tenant(self._session, self._tenant_id, parsed)
        if row is None:
            return None
        return SeedFileRef(file_id=str(row.id), key=row.key, n_examples=row.n_examples)

    def baseline_job(self, job_id: str) -> BaselineJob | None:
        parsed = as_uuid(job_id)
        if parsed is None:
            return None
        job = jobs_repo.get_job_for_tenant(self._session, self._tenant_id, parsed)
        if job is None:
            return None
        found = (artifacts_repo.get_artifact(self._session, job.id, n) for n in BUNDLE_ARTIFACTS)
        bundle = next((a for a in found if a is not None), None)
        return BaselineJob(
            job_id=str(job.id),
            status=job.status,
            base_model=job.base_model,
            method=job.method,
            bundle_key=bundle.key if bundle is not None else None,
        )

    def default_translator(self) -> str | None:
        # An operator's choice wins (a wrong name is reported, naming the setting); else
        # the spec's default when listed, else the first listed, so a minimal job works.
        if self._settings.default_translator:
            return self._settings.default_translator
        names = self.model_names("translator")
        if not names or TranslatorSpec().model in names:
            return None
        return names[0]

    def max_gpus(self) -> int:
        return self._settings.worker_gpus

    def judge(self, kind: Literal["openai", "local"]) -> JudgeRef | None:
        settings = self._settings
        if not settings.judge_model:
            return None
        if kind == "openai":
            if not settings.judge_url:
                return None
            return JudgeRef(kind="openai", model=settings.judge_model, url=settings.judge_url)
        entry = settings.resolve_model(settings.judge_model, "causal_lm")
        if entry is None:
            return None
        return JudgeRef(kind="local", model=entry.source, revision=entry.revision)
