"""Worker metrics for Prometheus: queue wait, stage durations, requeues, outcomes, GPU memory.

Served only when `CLO_WORKER_METRICS_PORT` is set, by the worker's main process. Celery's
prefork pool runs each job in a child process (a fresh one per job: max_tasks_per_child=1),
and the child is where a job's stages are timed, so the metrics use prometheus_client's
multiprocess mode: every process writes its samples to files in one folder
(PROMETHEUS_MULTIPROC_DIR, which the main process sets before prometheus_client is first
imported) and the main process's HTTP server adds them up at each scrape. Counters and
histograms of children that have exited stay counted; the GPU gauge reports the most recent
value any process wrote (multiprocess_mode="mostrecent"). Without the port, the samples stay
in the process that recorded them (in-process tests read them from the default registry).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STAGES = ("translating", "training", "evaluating", "packaging")
_MINUTE, _HOUR = 60.0, 3600.0
QUEUE_BUCKETS = (1, 5, 15, _MINUTE, 5 * _MINUTE, 15 * _MINUTE, _HOUR, 4 * _HOUR, 12 * _HOUR)
STAGE_BUCKETS = (1, 5, 15, _MINUTE, 5 * _MINUTE, 15 * _MINUTE, _HOUR, 3 * _HOUR, 12 * _HOUR)


@dataclass(frozen=True)
class WorkerMetrics:
    queue_wait: Any
    stage_duration: Any
    requeues: Any
    outcomes: Any
    gpu_memory_peak: Any


@lru_cache(maxsize=1)
def worker_metrics() -> WorkerMetrics:
    """The metric objects, created on first use (after `prepare_multiprocess` in a worker)."""
    from prometheus_client import Counter, Gauge, Histogram

    return WorkerMetrics(
        queue_wait=Histogram(
            "clo_worker_queue_wait_seconds",
            "From a job's latest entry into the queue (created, released, lease expired) "
            "to a worker's claim",
            buckets=QUEUE_BUCKETS,
        ),
        stage_duration=Histogram(
            "clo_worker_stage_duration_seconds",
            "Wall time of each completed stage of a job (the last one ends once results "
            "are stored)",
            ["stage"],
            buckets=STAGE_BUCKETS,
        ),
        requeues=Counter(
            "clo_worker_requeues_total",
            "Claims of a job that had gone back to the queue: released by a stopping worker, "
            "or its lease expired",
            ["reason"],
        ),
        outcomes=Counter(
            "clo_worker_job_outcomes_total",
            "How each delivered wake-up ended (succeeded, failed, cancelled, released, "
            "lease_lost, abandoned, not_claimable, interrupted)",
            ["outcome"],
        ),
        gpu_memory_peak=Gauge(
            "clo_worker_gpu_memory_peak_bytes",
            "Peak CUDA memory allocated by the job process during its latest stage, per device "
            "(torch.cuda.max_memory_allocated); absent without CUDA",
            ["stage", "device"],
            multiprocess_mode="mostrecent",
        ),
    )


def observe_queue_wait(entered: datetime, claimed: datetime) -> None:
    worker_metrics().queue_wait.observe(max(0.0, (claimed - entered).total_seconds()))


def count_requeue(reason: str) -> None:
    worker_metrics().requeues.labels(reason).inc()


def count_outcome(outcome: str) -> None:
    worker_metrics().outcomes.labels(outcome).inc()


def record_gpu_peak(stage: str) -> None:
    """The stage's CUDA peak per device, then a fresh peak for the next stage. Reads torch
    only if the job already imported it (the reaper and API never do)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return
    for device in range(torch.cuda.device_count()):
        peak = torch.cuda.max_memory_allocated(device)
        worker_metrics().gpu_memory_peak.labels(stage, str(device)).set(peak)
        torch.cuda.reset_peak_memory_stats(device)


class StageClock:
    """Times a job's stages: a stage is observed when the next one starts or the job ends
    well; a stage cut short (failure, cancel, lease lost) is not a stage duration."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self._started = 0.0

    def enter(self, stage: str) -> None:
        self.close()
        self.stage = stage
        self._started = time.monotonic()

    def close(self) -> None:
        if self.stage is None:
            return
        worker_metrics().stage_duration.labels(self.stage).observe(time.monotonic() - self._started)
        record_gpu_peak(self.stage)
        self.stage = None


# ---- the main process: the multiprocess folder and the HTTP server --------------------------

_owned_dir: str | None = None


def prepare_multiprocess() -> str:
    """Point prometheus_client at a multiprocess folder before it is imported; returns it.

    A PROMETHEUS_MULTIPROC_DIR already set is used as it is (its owner empties it between
    runs); otherwise a fresh temporary folder, removed by `cleanup` at worker shutdown.
    """
    global _owned_dir
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        folder = _owned_dir = tempfile.mkdtemp(prefix="clo-worker-metrics-")
        os.environ[MULTIPROC_ENV] = folder
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus_client picks its value store when first imported: too early here.
        raise RuntimeError("prometheus_client was imported before its multiprocess folder was set")
    return folder


def serve(host: str, port: int) -> None:
    """Expose the samples of this process and its pool children on http://host:port/."""
    folder = prepare_multiprocess()  # first: before prometheus_client is imported
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(_FoldSafeCollector(folder))
    worker_metrics()  # every family is listed from the first scrape, before any job ran
    start_http_server(port, addr=host, registry=registry)
    logger.info("worker metrics on http://%s:%d/ (multiprocess folder %s)", host, port, folder)


def cleanup() -> None:
    """Remove the temporary multiprocess folder this process created, if any."""
    if _owned_dir is not None:
        shutil.rmtree(_owned_dir, ignore_errors=True)


# ---- keeping the folder small: one pool process per job would leave files per job -----------

# Counters and histograms add up over processes; the GPU gauge keeps the newest value.
_FOLDED = ("counter", "histogram", "gauge_mostrecent")
_LOCK = ".fold.lock"


@contextmanager
def _folder_lock(folder: str, exclusive: bool) -> Iterator[None]:
    with open(os.path.join(folder, _LOCK), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _FoldSafeCollector:
    """prometheus_client's MultiProcessCollector, read under the folder's lock, so a scrape
    never sees a sample both in a process's file and in the archive (or in neither)."""

    def __init__(self, folder: str) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.folder = folder
        self.inner = MultiProcessCollector(None, path=folder)

    def collect(self) -> Iterator[Any]:
        with _folder_lock(self.folder, exclusive=False):
            families = list(self.inner.collect())
        yield from families


def fold_into_archive(folder: str, pid: int) -> None:
    """Add process `pid`'s samples to the folder's `*_archive.db` files and delete its own.

    Run by each pool process as it exits (after its one job), so the folder holds a few
    files however many jobs ran, and a scrape reads those, not one set per job ever run.
    A process killed outright skips this: its files stay and are still counted."""
    from prometheus_client import values
    from prometheus_client.mmap_dict import MmapedDict

    close = getattr(values.ValueClass, "close_all_files", None)
    if close is not None:
        close()  # this process writes no more samples
    with _folder_lock(folder, exclusive=True):
        for prefix in _FOLDED:
            own = os.path.join(folder, f"{prefix}_{pid}.db")
            if not os.path.exists(own):
                continue
            archive = MmapedDict(os.path.join(folder, f"{prefix}_archive.db"))
            try:
                for key, value, stamp, _ in MmapedDict.read_all_values_from_file(own):
                    old, old_stamp = archive.read_value(key)
                    if prefix.startswith("gauge"):
                        if stamp >= old_stamp:
                            archive.write_value(key, value, stamp)
                    else:
                        archive.write_value(key, old + value, stamp)
            finally:
                archive.close()
            os.remove(own)
