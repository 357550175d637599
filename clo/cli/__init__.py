"""`clo` command line: importing the area modules registers their commands on `app`."""

from clo.cli import admin as _admin  # noqa: E402,F401
from clo.cli import data as _data  # noqa: E402,F401
from clo.cli import demo as _demo  # noqa: E402,F401
from clo.cli import evaluate as _evaluate  # noqa: E402,F401
from clo.cli import jobs as _jobs  # noqa: E402,F401
from clo.cli import run as _run  # noqa: E402,F401

# One import per area; each module decorates its commands with @app.command / app.add_typer.
from clo.cli import tiny as _tiny  # noqa: E402,F401
from clo.cli import train as _train  # noqa: E402,F401
from clo.cli import translate as _translate  # noqa: E402,F401
from clo.cli.app import app

__all__ = ["app"]
