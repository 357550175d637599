"""The shared logging setup (persistence.logs): ids bound per job or request, seen by other
threads of a worker process, on JSON and text lines; the request id in the wake-up header."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from persistence.logs import (
    JsonFormatter,
    TextFormatter,
    bind_job,
    configure_logging,
    current_job_id,
    current_request_id,
    valid_request_id,
)
from persistence.wakeup import REQUEST_ID_HEADER, TASK_NAME, send_wakeup


def _record(message: str, **extra: Any) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "worker.runner", "msg": message, "levelname": "INFO"})
    record.__dict__.update(extra)
    return record


def test_bound_ids_are_on_json_and_text_lines_and_nest() -> None:
    with bind_job("job-1", "req-1"):
        line = json.loads(JsonFormatter().format(_record("claimed")))
        assert (line["job_id"], line["request_id"]) == ("job-1", "req-1")
        with bind_job("job-2", None):
            assert (current_job_id(), current_request_id()) == ("job-2", None)
        assert (
            TextFormatter()
            .format(_record("claimed"))
            .endswith("claimed job_id=job-1 request_id=req-1")
        )
        # A record's own `extra` wins over what is bound (the API's request line names its job).
        assert json.loads(JsonFormatter().format(_record("x", job_id="job-9")))["job_id"] == "job-9"
    assert (current_job_id(), current_request_id()) == (None, None)
    assert "job_id" not in json.loads(JsonFormatter().format(_record("after")))


def test_process_wide_binding_reaches_other_threads_and_nests() -> None:
    """The lease heartbeat logs from its own thread, which starts with empty context vars."""
    seen: list[tuple[str | None, str | None]] = []

    def look() -> None:
        seen.append((current_job_id(), current_request_id()))

    with bind_job("job-1", "req-1", process_wide=True):
        with bind_job("job-1", "req-2", process_wide=True):
            thread = threading.Thread(target=look)
            thread.start()
            thread.join()
        thread = threading.Thread(target=look)  # the outer binding is back
        thread.start()
        thread.join()
    look()
    assert seen == [("job-1", "req-2"), ("job-1", "req-1"), (None, None)]


def test_client_request_ids_are_short_and_printable() -> None:
    assert valid_request_id("req-42:a/b") == "req-42:a/b"
    for bad in (None, "", "a b", "x" * 129, "line\nbreak", "naïve"):
        assert valid_request_id(bad) is None


def test_configure_logging_twice_adds_one_handler() -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        configure_logging(json_lines=True)
        configure_logging(json_lines=True, level=logging.WARNING)
        added = [h for h in root.handlers if h not in before]
        assert len(added) == 1 and isinstance(added[0].formatter, JsonFormatter)
        assert root.level == logging.WARNING
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)


class _Sender:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_task(self, name: str, args: list[str], **options: Any) -> None:
        self.sent.append({"name": name, "args": args, **options})


def test_wakeup_carries_the_bound_request_id_in_a_header() -> None:
    sender = _Sender()
    with bind_job("j", "req-5"):
        assert send_wakeup(sender, "j", "gpu")
    assert send_wakeup(sender, "k", "gpu")  # nothing bound (the reaper): no header
    assert send_wakeup(sender, "m", "gpu", request_id="req-6")
    assert [m["headers"] for m in sender.sent] == [
        {REQUEST_ID_HEADER: "req-5"},
        {},
        {REQUEST_ID_HEADER: "req-6"},
    ]
    assert {m["name"] for m in sender.sent} == {TASK_NAME}
