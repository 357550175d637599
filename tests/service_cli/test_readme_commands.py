"""README and CLI agree: every `clo` command in the README's code blocks exists, its
options are that command's, and its `--help` works with no API key set."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from service_cli.main import app

README = Path(__file__).resolve().parents[2] / "README.md"
_CLO = re.compile(r"^\s*(?:\$C|\.venv/bin/clo|clo)\s+(.*)$")


def _readme_commands() -> list[list[str]]:
    """The argument lists of `clo` lines in fenced code blocks (continuations joined)."""
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", README.read_text(), flags=re.S)
    found: list[list[str]] = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            match = _CLO.match(line)
            if match:
                found.append(shlex.split(match.group(1), comments=True))
    return found


COMMANDS = _readme_commands()


def _is_group(command: Any) -> bool:
    # Typer vendors its own click, so duck-type rather than isinstance(click.Group).
    return isinstance(getattr(command, "commands", None), dict)


def _walk(args: list[str]) -> tuple[list[str], list[Any], list[str]]:
    """(subcommand path, the commands along it, the remaining arguments)."""
    command: Any = typer.main.get_command(app)
    chain, path = [command], []
    rest = list(args)
    while _is_group(command) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
        chain.append(command)
        path.append(command.name or "")
    return path, chain, rest


def test_the_readme_shows_clo_commands() -> None:
    assert len(COMMANDS) >= 10 and ["jobs", "--help"] in COMMANDS


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a[:3]) for a in COMMANDS])
def test_readme_command_exists_and_its_help_works_without_a_key(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLO_API_KEY", raising=False)
    path, chain, rest = _walk(args)
    assert path, f"`clo {' '.join(args)}`: no such command"
    if _is_group(chain[-1]):
        assert rest == ["--help"], f"`clo {' '.join(path)}` needs a subcommand"
    # An option may belong to the command or to a group above it (clo jobs --api-url ...).
    known = {opt for c in chain for p in c.params for opt in (*p.opts, *p.secondary_opts)}
    options = {a.split("=")[0] for a in rest if a.startswith("--")} - {"--help"}
    assert options <= known, f"`clo {' '.join(path)}` has no option {sorted(options - known)}"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output


def test_jobs_help_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLO_API_KEY", raising=False)
    for sub in ("submit", "list", "show", "watch", "cancel", "download"):
        result = CliRunner().invoke(app, ["jobs", sub, "--help"])
        assert result.exit_code == 0, result.output
    # A command that talks to the API still asks for the key, naming where to set it.
    result = CliRunner().invoke(app, ["jobs", "list"])
    assert result.exit_code != 0 and "CLO_API_KEY" in result.output
