"""Celery settings that hour-long GPU tasks depend on."""

from __future__ import annotations

from pathlib import Path

from worker.celery_app import TASK_NAME, broker_options, make_celery


def test_long_task_settings():
    conf = make_celery().conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.worker_concurrency == 1
    # A broker outage must not end a running job (Postgres holds its lease).
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is False
    assert conf.task_routes[TASK_NAME]["queue"] == conf.task_default_queue
    assert conf.accept_content == ["json"]  # no pickle from the broker


def test_redis_visibility_timeout_outlasts_a_long_job(tmp_path: Path):
    options = broker_options("redis://localhost:6379/0", tmp_path, 48 * 3600)
    assert options == {"visibility_timeout": 48 * 3600}
    assert not (tmp_path / "broker").exists()


def test_filesystem_broker_shares_one_folder_between_producer_and_consumer(tmp_path: Path):
    options = broker_options("filesystem://", tmp_path, 60)
    assert options["data_folder_in"] == options["data_folder_out"]
    assert Path(options["data_folder_in"]).is_dir()
    assert Path(options["processed_folder"]).is_dir()
    # Exchange tables go under the data dir, not into the worker's working directory.
    control = Path(options["control_folder"])
    assert control.is_dir() and control.is_relative_to(tmp_path.resolve())
