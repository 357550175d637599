"""The API's side of the shared logging setup (persistence.logs): request and job ids ride
along on every line of a request."""

from __future__ import annotations

import logging

from persistence.logs import JsonFormatter, configure_logging, job_id_var, request_id_var

__all__ = ["JsonFormatter", "configure_json_logging", "job_id_var", "request_id_var"]


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send every logger's records to stderr as one JSON object per line."""
    configure_logging(json_lines=True, level=level)
