"""The `clo` console script: the library's Typer app with the service commands mounted on it."""

from __future__ import annotations

from clo.cli import app
from service_cli.admin import admin_app
from service_cli.demo import demo
from service_cli.jobs import jobs_app

# Mounted here, not in clo/cli: the ML library must not import the service's code.
app.add_typer(admin_app, name="admin")
app.add_typer(jobs_app, name="jobs")
app.command("demo")(demo)

__all__ = ["app"]
