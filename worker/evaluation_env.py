"""The I/O a job's evaluation needs on this worker: the judge's secret and the baseline bundle.

What to use was settled when the job was resolved (clo.resolve): this only fetches it,
before any GPU time is spent, so a missing bundle fails the job at once.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
from pathlib import Path

from clo.errors import CloError
from clo.resolve import BASELINE_PARAM, ResolvedJob
from persistence.artifact_store import BlobStore
from persistence.settings import Settings
from persistence.storage import open_store

logger = logging.getLogger(__name__)


def judge_api_key(resolved: ResolvedJob, settings: Settings) -> str | None:
    """The OpenAI-compatible judge's key from this worker's settings (never stored on a job)."""
    if resolved.judge is None or resolved.judge.kind != "openai" or not settings.judge_api_key:
        return None
    return settings.judge_api_key.get_secret_value()


def baseline_bundle(resolved: ResolvedJob, workdir: Path, settings: Settings) -> Path | None:
    """Unpack the baseline job's bundle into workdir/baseline, when a judge will read it."""
    baseline = resolved.baseline
    if baseline is None or resolved.judge is None:
        return None  # only the judge uses a baseline
    store = open_store(settings)
    if baseline.bundle_key is None or not store.exists(baseline.bundle_key):
        raise CloError(
            f"baseline job {baseline.job_id} has no stored bundle",
            code="baseline_job_no_bundle",
            param=BASELINE_PARAM,
        )
    target = workdir / "baseline"
    if not (target / ".complete").is_file():
        _unpack(store, baseline.bundle_key, target)
    return target


def _unpack(store: BlobStore, key: str, target: Path) -> None:
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
