"""`clo` command line: importing the area modules registers their commands on `app`.

The service commands (admin, jobs, demo) live in service_cli/, which mounts them on `app`.
"""

from clo.cli import data as _data  # noqa: E402,F401
from clo.cli import evaluate as _evaluate  # noqa: E402,F401
from clo.cli import export as _export  # noqa: E402,F401
from clo.cli import models as _models  # noqa: E402,F401
from clo.cli import run as _run  # noqa: E402,F401

# One import per area; each module decorates its commands with @app.command / app.add_typer.
from clo.cli import tiny as _tiny  # noqa: E402,F401
from clo.cli import train as _train  # noqa: E402,F401
from clo.cli import translate as _translate  # noqa: E402,F401
from clo.cli.app import app

__all__ = ["app"]
