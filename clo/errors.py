"""Exceptions shared across the clo library."""


class CloError(Exception):
    """Base class: a problem the user can fix (bad input, missing file, bad option)."""


class Stopped(Exception):
    """Raised by a long-running function when its should_stop hook asked it to stop."""
