"""The one Typer app every `clo` sub-command registers on."""

import typer

app = typer.Typer(
    name="clo",
    help="Cross-Lingual Optimization: train, translate, evaluate, and talk to the CLO service.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
