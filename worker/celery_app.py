"""The Celery app: hour-long GPU tasks, one at a time, acknowledged only when finished.

The message is only a wake-up carrying a job id; Postgres decides who runs the job (see
persistence.repositories.leases), so a redelivered or duplicated message is harmless.
"""

from celery import Celery

from persistence.settings import get_settings
from persistence.wakeup import TASK_NAME, broker_options
from worker.config import get_worker_settings


def make_celery() -> Celery:
    settings = get_settings()
    wsettings = get_worker_settings()
    assert settings.broker_url is not None
    app = Celery("clo", broker=settings.broker_url, include=["worker.tasks"])
    app.conf.update(
        # A worker started without --queues consumes its GPU class's queue (CLO_GPU_MEMORY_GIB).
        task_default_queue=settings.worker_queue,
        task_routes={TASK_NAME: {"queue": settings.queue}},
        # Ack after the task ends, and requeue if the worker process dies mid-task.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One task per GPU: never reserve a second message while one runs.
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_max_tasks_per_child=wsettings.max_tasks_per_child,
        # Postgres decides who runs a job and the lease heartbeat goes to Postgres: a broker
        # outage must not end the running task (its late ack then fails, and a redelivered
        # wake-up finds the job held or finished, a no-op).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_options(
            settings.broker_url, settings.data_dir, wsettings.visibility_timeout_seconds
        ),
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,  # and worker.observability sets up logging itself
        broker_connection_timeout=5,
    )
    from worker import observability  # noqa: F401 - its signal receivers: logging, metrics
    from worker.shutdown import NotifyPoolOnShutdown

    app.steps["worker"].add(NotifyPoolOnShutdown)
    return app


app = make_celery()
