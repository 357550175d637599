"""Celery tasks: thin adapters that hand the job (or export) id to its runner."""

import logging
import os
import socket

from celery.signals import worker_init

from persistence.export_wakeup import EXPORT_TASK_NAME
from worker.celery_app import TASK_NAME, app
from worker.exports import run_export
from worker.observability import message_ids
from worker.runner import run_job

logger = logging.getLogger(__name__)


@worker_init.connect
def _preload_ml_stack(**_: object) -> None:
    """Import torch/transformers once in the parent: each job's fresh pool child then forks
    with them loaded (seconds saved per job). CUDA is not touched here, so forking stays safe."""
    import peft  # noqa: F401
    import transformers  # noqa: F401

    import clo.pipeline  # noqa: F401
    import clo.trainer  # noqa: F401


@app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job_task(self, job_id: str) -> str:  # type: ignore[no-untyped-def]
    """Claim and run one job; a message for a job held by someone else is a no-op."""
    worker_id = f"{self.request.hostname or socket.gethostname()}:{os.getpid()}"
    _, request_id = message_ids(TASK_NAME, [job_id], self.request.__dict__)
    return run_job(job_id, worker_id=worker_id, request_id=request_id)


@app.task(name=EXPORT_TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_export_task(self, export_id: str) -> str:  # type: ignore[no-untyped-def]
    """Claim and run one export of a succeeded job (same queue and workers as jobs)."""
    worker_id = f"{self.request.hostname or socket.gethostname()}:{os.getpid()}"
    return run_export(export_id, worker_id=worker_id)
