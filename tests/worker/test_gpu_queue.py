"""The worker side of GPU-aware queues: a worker consumes its class's queue, and every
wake-up it or the reaper sends goes to the queue of the job's stored estimate."""

from __future__ import annotations

from clo.memory_estimate import GIB
from persistence.settings import Settings
from worker.celery_app import make_celery
from worker.enqueue import job_queue


def test_a_worker_consumes_its_gpu_class_queue(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from persistence.settings import get_settings

    monkeypatch.setenv("CLO_QUEUE", "fleet")
    monkeypatch.setenv("CLO_GPU_MEMORY_GIB", "48")
    monkeypatch.setenv("CLO_BROKER_URL", "memory://")
    get_settings.cache_clear()
    try:
        assert make_celery().conf.task_default_queue == "fleet-48gb"
    finally:
        get_settings.cache_clear()
    assert Settings(queue="fleet", gpu_memory_gib=None).worker_queue == "fleet"  # no class


def test_wake_ups_follow_the_stored_estimate(pg_url, make_job) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(database_url=pg_url, queue="fleet", gpu_classes=[80, 24, 48])
    small = make_job(resolved={"memory_estimate_bytes": 10 * GIB})
    medium = make_job(resolved={"memory_estimate_bytes": 30 * GIB})  # > 90% of 24
    unknown = make_job(resolved=None)
    assert job_queue(small, settings) == "fleet-24gb"
    assert job_queue(medium, settings) == "fleet-48gb"
    assert job_queue(unknown, settings) == "fleet-80gb"  # not estimated: the largest class
    assert job_queue(small, Settings(database_url=pg_url, queue="fleet")) == "fleet"
