"""Soft shutdown: a stopping worker checkpoints its job and hands it back to the queue.

Docker/systemd send SIGTERM to the worker's main process, and Celery's warm shutdown then
waits for the running task, which for a training job could take hours. Instead the main
process tells the task process (SIGUSR2 to prefork children; a flag in solo mode), the
job's should_stop() turns True, training checkpoints and stops, and the runner releases
the job so another worker resumes it from that checkpoint at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from celery import bootsteps
from celery.signals import worker_process_init, worker_shutting_down

logger = logging.getLogger(__name__)

_requested = threading.Event()


def shutdown_requested() -> bool:
    return _requested.is_set()


def _on_sigusr2(signum: int, frame: Any) -> None:
    _requested.set()


@worker_process_init.connect
def _install_child_handler(**_: Any) -> None:
    """In each prefork child: SIGUSR2 from the main process means "checkpoint and stop"."""
    signal.signal(signal.SIGUSR2, _on_sigusr2)


@worker_shutting_down.connect
def _flag_in_process(**_: Any) -> None:
    """Solo pool: the task runs in this very process."""
    _requested.set()


class NotifyPoolOnShutdown(bootsteps.StartStopStep):
    """Stops before the pool does (which waits for tasks): signal the pool's children first."""

    requires = {"celery.worker.components:Pool"}

    def stop(self, worker: Any) -> None:
        pids = (getattr(worker.pool, "info", None) or {}).get("processes", [])
        for pid in pids:
            if pid and pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGUSR2)
                    logger.info("asked pool process %s to checkpoint and release its job", pid)
                except ProcessLookupError:
                    pass
