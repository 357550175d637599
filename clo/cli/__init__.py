"""`clo` command line: importing the area modules registers their commands on `app`."""

from clo.cli.app import app

# One import per area; each module decorates its commands with @app.command / app.add_typer.
from clo.cli import tiny as _tiny  # noqa: E402,F401

__all__ = ["app"]
