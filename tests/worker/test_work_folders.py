"""Work folders go with their job: removed on every terminal state, whoever ended the job (the
runner, the reaper, the API), and a failed job's kept only with keep_failed_work."""

from __future__ import annotations

import uuid

import pytest

from tests.worker.conftest import in_process_settings
from worker.config import WorkerSettings
from worker.runner import run_job
from worker.work_folders import sweep_finished


def _folder(root, job_id):  # noqa: ANN001
    folder = root / str(job_id)
    (folder / "train" / "checkpoints").mkdir(parents=True)
    (folder / "translate.jsonl").write_text("{}\n")
    return folder


@pytest.mark.parametrize("keep_failed", [False, True])
def test_sweep_removes_folders_of_finished_and_deleted_jobs(
    factory, make_job, tmp_path, keep_failed
):
    root = tmp_path / "work"
    by_status = {s: make_job(status=s) for s in ("succeeded", "failed", "cancelled")}
    live = {s: make_job(status=s) for s in ("queued", "running")}
    deleted = uuid.uuid4()  # a job row that no longer exists
    for job_id in [*by_status.values(), *live.values(), deleted]:
        _folder(root, job_id)
    (root / "not-a-job").mkdir()

    removed = sweep_finished(factory, root, keep_failed=keep_failed)

    left = {p.name for p in root.iterdir()}
    expected = {str(j) for j in live.values()} | {"not-a-job"}
    if keep_failed:
        expected.add(str(by_status["failed"]))
    assert left == expected
    assert removed == 4 - int(keep_failed)


@pytest.mark.parametrize("keep_failed", [False, True])
def test_a_job_failing_in_the_runner_removes_its_folder_unless_kept(
    factory, make_job, pg_url, tmp_path, keep_failed
):
    # The spec fails validation in the worker; an earlier attempt left a folder behind.
    job_id = make_job(spec={"base_model": "x", "target_language": "de", "data_size": 2})
    wsettings = WorkerSettings(work_dir=tmp_path / "work", keep_failed_work=keep_failed)
    folder = _folder(wsettings.work_root, job_id)
    outcome = run_job(
        str(job_id),
        worker_id="w",
        settings=in_process_settings(pg_url, tmp_path),
        wsettings=wsettings,
        factory=factory,
    )
    assert outcome == "failed"
    assert folder.exists() is keep_failed


def test_keep_failed_work_reads_the_environment(monkeypatch):
    monkeypatch.setenv("CLO_KEEP_FAILED_WORK", "1")
    assert WorkerSettings().keep_failed_work is True
    monkeypatch.delenv("CLO_KEEP_FAILED_WORK")
    assert WorkerSettings().keep_failed_work is False
