"""The Celery app: hour-long GPU tasks, one at a time, acknowledged only when finished.

The message is only a wake-up carrying a job id; Postgres decides who runs the job (see
persistence.repositories.leases), so a redelivered or duplicated message is harmless.
"""

from pathlib import Path
from typing import Any

from celery import Celery

from persistence.settings import get_settings
from worker.config import get_worker_settings

TASK_NAME = "clo.run_job"


def broker_options(broker_url: str, data_dir: Path, visibility_timeout: int) -> dict[str, Any]:
    """Transport options: folders for the embedded filesystem broker, else a visibility timeout."""
    if broker_url.startswith("filesystem"):
        # Producer and consumer must share one folder: data_folder_in == data_folder_out.
        queue_dir = (data_dir / "broker" / "queue").resolve()
        processed = (data_dir / "broker" / "processed").resolve()
        # Kombu's default control folder is ./control, which litters whatever directory the
        # worker was started from with exchange tables.
        control = (data_dir / "broker" / "control").resolve()
        for folder in (queue_dir, processed, control):
            folder.mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "processed_folder": str(processed),
            "store_processed": False,
            "control_folder": str(control),
        }
    return {"visibility_timeout": visibility_timeout}


def make_celery() -> Celery:
    settings = get_settings()
    wsettings = get_worker_settings()
    assert settings.broker_url is not None
    app = Celery("clo", broker=settings.broker_url, include=["worker.tasks"])
    app.conf.update(
        task_default_queue=wsettings.queue,
        task_routes={TASK_NAME: {"queue": wsettings.queue}},
        # Ack after the task ends, and requeue if the worker process dies mid-task.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One task per GPU: never reserve a second message while one runs.
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_max_tasks_per_child=wsettings.max_tasks_per_child,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_options(
            settings.broker_url, settings.data_dir, wsettings.visibility_timeout_seconds
        ),
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        broker_connection_timeout=5,
    )
    from worker.shutdown import NotifyPoolOnShutdown

    app.steps["worker"].add(NotifyPoolOnShutdown)
    return app


app = make_celery()
