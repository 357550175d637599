"""Service settings: one pydantic-settings class read from `CLO_*` environment variables."""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from persistence.storage_url import parse_storage_url
from persistence.wakeup import DEFAULT_QUEUE

logger = logging.getLogger(__name__)

ModelKind = Literal["causal_lm", "translator"]
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# config.json model_type values that are translation models, for discovered local models.
_TRANSLATOR_TYPES = {"m2m_100", "nllb", "nllb-moe", "marian", "mbart"}


class ModelEntry(BaseModel):
    """One allow-listed model: where it comes from and the revision it is pinned to."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(..., description="Hugging Face hub id, or an absolute local directory.")
    revision: str | None = Field(None, description="Pinned hub commit (required for hub ids).")
    kind: ModelKind = Field("causal_lm", description="causal_lm: base model; translator: MT.")
    description: str = ""

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_absolute()


class Settings(BaseSettings):
    """Everything the API and the worker need to know about their environment."""

    model_config = SettingsConfigDict(env_prefix="CLO_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Field(Path("var"), description="Root of the embedded default's state.")
    database_url: str | None = Field(None, description="Default: sqlite:///<data_dir>/clo.db")
    broker_url: str | None = Field(None, description="Default: filesystem:// under data_dir")
    queue: str = Field(DEFAULT_QUEUE, description="Celery queue job wake-ups go to (GPU workers).")
    # GPU-aware queues (service.gpu_routing): the fleet's GPU classes in GiB, e.g. [24, 80];
    # a job goes to the queue of the smallest class its memory estimate fits, "<queue>-<N>gb".
    # Empty: one queue (`queue`), no estimate at POST.
    gpu_classes: list[int] = Field(
        default_factory=list, description="GPU memory classes (GiB) of the fleet's workers."
    )
    gpu_memory_gib: int | None = Field(
        None, ge=1, description="This worker's GPU class (GiB); it consumes that class's queue."
    )
    artifact_dir: Path | None = Field(None, description="Default: <data_dir>/artifacts")
    # Object storage for everything another host must read (artifacts, uploads): a URL,
    # file:///folder or s3://bucket/prefix; unset: the local artifact_dir. S3 credentials come
    # from the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE).
    storage_url: str | None = Field(
        None, description="file:///abs/folder or s3://bucket/prefix; default: artifact_dir."
    )
    storage_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, R2...), e.g. http://minio:9000."
    )
    storage_region: str | None = Field(None, description="S3 region, e.g. eu-central-1.")
    download_mode: Literal["stream", "redirect"] = Field(
        "stream",
        description="stream: the API sends the bytes (Range, sha256 headers); redirect: it "
        "answers 307 to a presigned URL of the object store (s3:// storage_url only).",
    )
    presigned_url_seconds: int = Field(
        300, ge=1, le=7 * 24 * 3600, description="Lifetime of a presigned redirect URL."
    )
    admin_secret: str = Field("", description="Reserved for admin endpoints; required in prod.")
    download_link_seconds: int = Field(
        300, ge=1, le=7 * 24 * 3600, description="Lifetime of a signed artifact download link."
    )
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_request_bytes: int = Field(1024 * 1024, ge=1, description="JSON request bodies.")
    max_concurrent_jobs_per_tenant: int = Field(
        4, ge=1, description="Running (and cancelling) jobs per tenant; more wait queued."
    )
    max_queued_jobs_per_tenant: int = Field(
        100, ge=1, description="Queued jobs per tenant; more get 429 queued_job_limit."
    )
    models: dict[str, ModelEntry] = Field(
        default_factory=dict, description="Allow-list: name -> {source, revision, kind}."
    )
    default_translator: str | None = Field(
        None,
        description="Allow-listed translator for jobs that name none; default: the spec's "
        "default if allow-listed, else the first allow-listed translator.",
    )
    # The worker's translation engine (clo/translate/ct2.py; docs/PERFORMANCE.md): a machine
    # choice like the device, so it is not part of a job's spec; the cache keys on it.
    translator_backend: Literal["transformers", "ctranslate2"] = Field(
        "transformers", description="transformers, or ctranslate2 (pip extra ct2)."
    )
    translator_compute_type: Literal[
        "auto",
        "float32",
        "int8",
        "int8_float32",
        "int8_float16",
        "int8_bfloat16",
        "float16",
        "bfloat16",
    ] = Field("auto", description="ctranslate2 only: auto follows the device (fp32 CPU, bf16 GPU).")
    worker_gpus: int = Field(
        1,
        ge=1,
        le=64,
        description="GPUs each worker (one node) owns: a job's `gpus` may ask for at most this "
        "many; its training stage then runs over that many processes (torchrun).",
    )
    lease_seconds: int = Field(120, ge=5)
    heartbeat_seconds: int = Field(20, ge=1)
    max_attempts: int = Field(3, ge=1)
    migrate_on_start: bool = True
    sse_poll_seconds: float = Field(0.5, gt=0)
    # The API's database budget per request (issue 15: under load a request waited for ever).
    db_pool_size: int = Field(
        40, ge=1, le=500, description="API connections per process (pool_size + max_overflow)."
    )
    db_pool_timeout_seconds: float = Field(
        5.0, gt=0, description="Wait for a pooled connection, then 503 database_busy."
    )
    db_statement_timeout_seconds: float | None = Field(
        10.0, gt=0, description="Postgres statement_timeout of API connections, then 503."
    )
    api_threads: int = Field(
        8,
        ge=1,
        le=500,
        description="Threads per API process running sync endpoints (keep it at most "
        "CLO_DB_POOL_SIZE); more compete with the event loop for the GIL (bench/RESULTS.md).",
    )
    request_deadline_seconds: float | None = Field(
        15.0,
        gt=0,
        description="An API request not answered this long after its body arrived is "
        "answered 503 request_deadline_exceeded; unset: no deadline.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token /metrics requires (Prometheus `authorization`); unset: "
        "/metrics is open, for a scrape over a private network only.",
    )
    log_json: bool = True
    # The judge of evaluation.judge: an OpenAI-compatible chat API (url + model + key), or
    # for judge "local" the allow-listed causal LM named by judge_model.
    judge_url: str | None = Field(None, description="Base URL, e.g. https://api.openai.com/v1")
    judge_model: str | None = Field(None, description="Judge model name (local: allow-listed).")
    judge_api_key: SecretStr | None = Field(None, description="Bearer key; never logged.")
    # Webhooks and retention, both run by the dispatcher process (python -m service.dispatcher).
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60, description="Per HTTP attempt.")
    webhook_max_attempts: int = Field(8, ge=1, le=50, description="Then a delivery is failed.")
    webhook_backoff_seconds: float = Field(
        30.0, gt=0, description="Wait before the first retry; doubles after each failure."
    )
    webhook_backoff_max_seconds: float = Field(3600.0, gt=0, description="Cap on that wait.")
    webhook_max_endpoints_per_tenant: int = Field(16, ge=1, le=1000)
    webhook_allow_private_networks: bool | None = Field(
        None,
        description="POST webhooks to loopback/private/link-local addresses; unset: allowed "
        "in development only (in production a tenant's URL must not reach internal hosts).",
    )
    dispatcher_interval_seconds: float = Field(2.0, gt=0, description="Dispatcher pass period.")
    artifact_retention_days: int | None = Field(
        None,
        ge=1,
        description="Delete artifacts (rows and bytes) of jobs finished more than this many "
        "days ago; unset: keep them until deleted.",
    )

    def class_queue(self, gib: int) -> str:
        """The Celery queue of GPU class `gib`."""
        return f"{self.queue}-{gib}gb"

    @property
    def worker_queue(self) -> str:
        """The queue this worker consumes: its GPU class's, else the one queue."""
        return self.queue if self.gpu_memory_gib is None else self.class_queue(self.gpu_memory_gib)

    @model_validator(mode="after")
    def _fill_defaults_and_check(self) -> Settings:
        if any(gib < 1 for gib in self.gpu_classes):
            raise ValueError("gpu_classes are GiB of GPU memory, each at least 1")
        self.gpu_classes = sorted(set(self.gpu_classes))
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir.resolve() / 'clo.db'}"
        if self.broker_url is None:
            self.broker_url = "filesystem://"
        if self.artifact_dir is None:
            self.artifact_dir = self.data_dir / "artifacts"
        if self.judge_url is not None and not self.judge_url.startswith(("http://", "https://")):
            raise ValueError("judge_url must start with http:// or https://")
        location = parse_storage_url(self.storage_url) if self.storage_url else None
        if self.download_mode == "redirect" and (location is None or location.scheme != "s3"):
            raise ValueError("download_mode redirect needs an s3:// storage_url")
        if self.storage_endpoint_url is not None and not self.storage_endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("storage_endpoint_url must start with http:// or https://")
        if self.translator_backend != "ctranslate2" and self.translator_compute_type != "auto":
            raise ValueError(
                "translator_compute_type applies only to translator_backend ctranslate2"
            )
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError("heartbeat_seconds must be at most half of lease_seconds")
        if self.environment == "production":
            if self.database_url.startswith("sqlite"):
                raise ValueError("production needs CLO_DATABASE_URL pointing at Postgres")
            if self.broker_url.startswith("filesystem"):
                raise ValueError("production needs CLO_BROKER_URL pointing at Redis")
            if not self.admin_secret:
                raise ValueError("production needs a non-empty CLO_ADMIN_SECRET")
        for name, entry in self.models.items():
            if not entry.is_local and not (entry.revision and _COMMIT_RE.match(entry.revision)):
                if self.environment == "production":
                    raise ValueError(
                        f"models.{name}: hub models need a pinned 40-hex commit as revision"
                    )
        return self

    @property
    def db_url(self) -> str:
        assert self.database_url is not None
        return self.database_url

    @property
    def artifact_root(self) -> Path:
        assert self.artifact_dir is not None
        return self.artifact_dir

    @property
    def webhooks_may_reach_private_networks(self) -> bool:
        if self.webhook_allow_private_networks is not None:
            return self.webhook_allow_private_networks
        return self.environment == "development"

    @property
    def filesystem_broker_dir(self) -> Path:
        """Folder the embedded Celery filesystem transport exchanges messages through."""
        return self.data_dir / "broker"

    @property
    def local_models_dir(self) -> Path:
        """Where the demo builds tiny models; scanned in development only."""
        return self.data_dir / "models"

    def allowed_models(self) -> dict[str, ModelEntry]:
        """The allow-list: configured entries plus, in development, local model folders."""
        found: dict[str, ModelEntry] = {}
        if self.environment == "development" and self.local_models_dir.is_dir():
            for sub in sorted(self.local_models_dir.iterdir()):
                entry = _discover_local_model(sub)
                if entry is not None:
                    found[sub.name] = entry
        found.update(self.models)
        return found

    def resolve_model(self, name: str, kind: ModelKind | None = None) -> ModelEntry | None:
        """The allow-listed entry called `name` (of `kind` if given), or None."""
        entry = self.allowed_models().get(name)
        if entry is None or (kind is not None and entry.kind != kind):
            return None
        return entry


def _discover_local_model(folder: Path) -> ModelEntry | None:
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        model_type = json.loads(config.read_text()).get("model_type", "")
    except (OSError, ValueError):
        logger.warning("skipping local model %s: unreadable config.json", folder)
        return None
    kind: ModelKind = "translator" if model_type in _TRANSLATOR_TYPES else "causal_lm"
    return ModelEntry(
        source=str(folder.resolve()), kind=kind, description=f"local {model_type} model"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings read from the environment once."""
    return Settings()
