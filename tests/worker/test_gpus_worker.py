"""A job's `gpus` in the worker: its training stage over 2 gloo processes under the lease,
and a job asking for more GPUs than the worker owns failing before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from clo.resolve import LocalCatalog, resolve_job
from clo.spec import JobSpec
from persistence.db import session_scope
from persistence.models import Job, JobEvent
from persistence.repositories import artifacts as artifacts_repo
from tests.worker.conftest import in_process_settings
from worker.config import WorkerSettings
from worker.runner import run_job


def _spec(gpus: int) -> dict[str, Any]:
    return {
        "base_model": "tiny",
        "target_language": "de",
        "data_size": 10,
        "trainable": "lora",
        "gpus": gpus,
        "seed_data": {"source": "parallel"},
        "hyperparameters": {
            "max_steps": 3,
            "batch_size": 2,
            "max_length": 96,
            "checkpoint_every": 1,
        },
        "evaluation": {"enabled": False},
    }


def test_a_job_asking_for_more_gpus_than_the_worker_owns_fails_naming_gpus(
    factory, make_job, pg_url, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # resolved where workers own 2, run by a worker that owns 1
    resolved = resolve_job(JobSpec.model_validate(_spec(2)), LocalCatalog(max_gpus=2))
    job_id = make_job(spec=_spec(2), base_model="tiny", resolved=resolved.model_dump(mode="json"))
    settings = in_process_settings(pg_url, tmp_path, worker_gpus=1)
    wsettings = WorkerSettings(work_dir=tmp_path / "work")
    assert (
        run_job(str(job_id), worker_id="w", settings=settings, wsettings=wsettings, factory=factory)
        == "failed"
    )
    with session_scope(factory) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.error is not None
        assert {k: job.error[k] for k in ("type", "code", "param")} == {
            "type": "user_error",
            "code": "too_many_gpus",
            "param": "gpus",
        }
        assert job.stage is None  # no stage started


def test_a_two_gpu_job_trains_over_two_processes_under_the_lease(
    tiny_qwen2: Path, factory, make_job, pg_url, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = in_process_settings(
        pg_url,
        tmp_path,
        worker_gpus=2,
        models={"tiny": {"source": str(tiny_qwen2), "kind": "causal_lm"}},
    )
    job_id = make_job(spec=_spec(2), base_model="tiny")
    wsettings = WorkerSettings(work_dir=tmp_path / "work")
    outcome = run_job(
        str(job_id), worker_id="w", settings=settings, wsettings=wsettings, factory=factory
    )
    with session_scope(factory) as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert outcome == "succeeded", job.error
        assert job.metrics_summary is not None
        # the ranks' checkpoints were committed through this worker's lease: the last one
        # before the end (steps 1 and 2 of 3), written in the lease's owner folder
        assert job.checkpoint_step == 2
        assert Path(job.checkpoint_path or "").name.startswith("owner-")
        types = s.scalars(select(JobEvent.type).where(JobEvent.job_id == job_id)).all()
        assert types.count("checkpoint") == 2
        assert artifacts_repo.get_artifact(s, job_id, "adapter.tar") is not None
