"""Worker-only settings (CLO_ env prefix), next to the shared `persistence.settings.Settings`."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from persistence.settings import get_settings


class WorkerSettings(BaseSettings):
    """Timing and scratch-space knobs of the worker and the reaper (the queue: Settings.queue)."""

    model_config = SettingsConfigDict(env_prefix="CLO_", extra="ignore")

    work_dir: Path | None = Field(
        None, description="Per-job scratch folders; default <data_dir>/work"
    )
    visibility_timeout_seconds: int = Field(
        48 * 3600,
        ge=60,
        description="Redis redelivers an unacked message after this; must exceed the longest job.",
    )
    progress_interval_seconds: float = Field(
        1.0, gt=0, description="Progress writes at most this often."
    )
    cancel_poll_seconds: float = Field(
        1.0,
        ge=0,
        description="A running job reads its cancel flag between steps at most this often "
        "(0: only at heartbeats).",
    )
    reaper_interval_seconds: float = Field(15.0, gt=0, description="How often the reaper runs.")
    requeue_after_seconds: float = Field(
        600.0,
        gt=0,
        description="Re-send the wake-up of a job queued this long (duplicates are harmless).",
    )
    keep_failed_work: bool = Field(
        False,
        description="Keep a failed job's work folder (for debugging); every other terminal "
        "state removes it.",
    )
    max_tasks_per_child: int = Field(1, ge=1, description="1: a fresh process (clean GPU) per job.")
    worker_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve the worker's Prometheus metrics on this port (from its main "
        "process, pool children included); unset: not served.",
    )
    worker_metrics_host: str = Field(
        "0.0.0.0", description="The address the worker's metrics server listens on."
    )

    @property
    def work_root(self) -> Path:
        return self.work_dir or get_settings().data_dir / "work"


@lru_cache(maxsize=1)
def get_worker_settings() -> WorkerSettings:
    return WorkerSettings()
