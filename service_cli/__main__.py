"""`python -m service_cli ...`: the same `clo` command as the console script."""

from service_cli.main import app

app()
