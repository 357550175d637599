"""`clo languages` and `clo validate-seed`: inspect the language registry and check seed files."""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from clo.cli.app import app

console = Console()


@app.command("languages")
def languages(
    paper: Annotated[bool, typer.Option(help="Only the paper's six languages.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List target languages with their M2M100/NLLB codes and the recommended trainable set."""
    from clo.languages import PAPER_LANGUAGES, all_languages, recommended_trainable

    langs = [lang for lang in all_languages() if not paper or lang.code in PAPER_LANGUAGES]
    if as_json:
        rows = [
            {**lang.__dict__, "recommended_trainable": recommended_trainable(lang.code)}
            for lang in langs
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(langs)} languages")
    for column in ("code", "name", "script", "M2M100", "NLLB", "lingua", "resource", "train"):
        table.add_column(column)
    for lang in langs:
        table.add_row(
            lang.code,
            lang.name,
            lang.script,
            lang.m2m100_code,
            lang.nllb_code or "-",
            "yes" if lang.lingua_name else "no",
            lang.resource,
            recommended_trainable(lang.code),
        )
    console.print(table)


@app.command("validate-seed")
def validate_seed(
    path: Annotated[Path, typer.Argument(help="JSONL file: prompt/response or messages lines.")],
) -> None:
    """Check a seed JSONL file line by line and report every invalid line."""
    from clo.seed import validate_jsonl_lines

    if not path.is_file():
        raise typer.BadParameter(f"file not found: {path}", param_hint="PATH")
    with path.open("rb") as fh:
        report = validate_jsonl_lines(fh)
    for error in report.errors:
        typer.echo(str(error), err=True)
    if report.error_count > len(report.errors):
        typer.echo(f"... and {report.error_count - len(report.errors)} more errors", err=True)
    typer.echo(f"{report.count} valid example(s), {report.error_count} invalid line(s)")
    if not report.ok:
        raise typer.Exit(code=1)
