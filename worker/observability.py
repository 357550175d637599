"""The worker's logging and metrics, hooked into Celery's signals (imported by celery_app).

- Logging: a `setup_logging` receiver makes Celery skip its own setup entirely (no root
  hijack, no handlers of its own, no stdout redirection), so persistence.logs's one setup
  (JSON with CLO_LOG_JSON, the default) is what the main process and every pool child use.
- Job ids on every line about a job: Celery's own "Task ... received" line (main process)
  knows no job, so it is replaced by ours with the job id and the creating request's id from
  the message header; from a task's prerun to its postrun both ids are bound (Celery's
  "Task ... succeeded" line included), and worker.runner binds them again around the run.
- Metrics: the main process prepares prometheus_client's multiprocess folder and serves it
  when CLO_WORKER_METRICS_PORT is set (worker.metrics).
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from typing import Any

from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    task_received,
    worker_init,
    worker_process_shutdown,
    worker_shutdown,
)

from persistence.logs import bind_job, configure_logging, valid_request_id
from persistence.settings import get_settings
from persistence.wakeup import REQUEST_ID_HEADER, TASK_NAME
from worker import metrics
from worker.config import get_worker_settings

logger = logging.getLogger("worker.tasks")

_bound = ExitStack()  # the ids bound from a task's prerun to its postrun


def message_ids(task_name: str, args: Any, headers: Any) -> tuple[str | None, str | None]:
    """(job id, request id) of a run_job message; (None, None) for any other task."""
    if task_name != TASK_NAME or not args:
        return None, None
    request_id = headers.get(REQUEST_ID_HEADER) if isinstance(headers, dict) else None
    return str(args[0]), valid_request_id(request_id if isinstance(request_id, str) else None)


@setup_logging.connect
def _configure_logging(loglevel: Any = None, **_: Any) -> None:
    configure_logging(json_lines=get_settings().log_json, level=loglevel or logging.INFO)
    # Its line names the task id, not the job: ours below says the same with the job's ids.
    logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)


@task_received.connect
def _log_received(request: Any = None, **_: Any) -> None:
    job_id, request_id = message_ids(request.name, request.args, request.request_dict)
    if job_id is not None:
        logger.info(
            "wake-up received for job %s",
            job_id,
            extra={"job_id": job_id, "request_id": request_id, "task_id": request.id},
        )


@task_prerun.connect
def _bind_task(task: Any = None, args: Any = None, **_: Any) -> None:
    job_id, request_id = message_ids(task.name, args, task.request.__dict__)
    if job_id is not None:
        _bound.enter_context(bind_job(job_id, request_id, process_wide=True))


@task_postrun.connect
def _unbind_task(**_: Any) -> None:
    _bound.close()


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    """In the main process, before the pool forks (children inherit the folder setting)."""
    ws = get_worker_settings()
    if ws.worker_metrics_port is not None:
        _configure_logging()  # Celery sets logging up only after this signal: say it here too
        metrics.serve(ws.worker_metrics_host, ws.worker_metrics_port)


@worker_process_shutdown.connect
def _fold_metrics(pid: int | None = None, **_: Any) -> None:
    """A pool process ends (after its job): its samples go into the folder's archive."""
    folder = os.environ.get(metrics.MULTIPROC_ENV)
    if folder and get_worker_settings().worker_metrics_port is not None:
        metrics.fold_into_archive(folder, pid or os.getpid())


@worker_shutdown.connect
def _remove_metrics_folder(**_: Any) -> None:
    metrics.cleanup()
