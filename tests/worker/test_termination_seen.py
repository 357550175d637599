"""The runner hands a job back (attempt refunded) whenever the process is being terminated,
also when the SystemExit surfaced as a database error raised while it unwound."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from worker.runner import _terminating


def _raised_while_handling(first: BaseException, then: Exception) -> Exception:
    try:
        try:
            raise first
        except BaseException:
            raise then  # noqa: B904 - the implicit context is what is under test
    except Exception as exc:  # noqa: BLE001
        return exc


def test_a_database_error_raised_while_exiting_counts_as_termination() -> None:
    rollback_failed = OperationalError("ROLLBACK", {}, Exception("server closed the connection"))
    assert _terminating(_raised_while_handling(SystemExit(241), rollback_failed))
    assert _terminating(_raised_while_handling(KeyboardInterrupt(), ValueError("x")))
    assert _terminating(SystemExit(0))


def test_a_plain_failure_is_not_termination() -> None:
    assert not _terminating(OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert not _terminating(_raised_while_handling(ValueError("a"), RuntimeError("b")))
