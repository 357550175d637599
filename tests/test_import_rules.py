"""The layer rules: which top-level packages each part of the code may import.

clo/ is the ML library (no service code, no web/database/queue stacks); persistence/ sits under
api/ and worker/ and knows neither them nor clo/; api/ and worker/ do not know each other;
service_cli/ (the `clo admin|jobs|demo` commands) is on top and nothing imports it. Every
import counts: top level, inside functions, under TYPE_CHECKING, relative, and
`importlib.import_module("...")` / `__import__("...")` with a literal name.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SERVICE_STACKS = {"fastapi", "starlette", "uvicorn", "celery", "kombu"}
DATABASE_STACKS = {"sqlalchemy", "alembic", "psycopg", "psycopg2"}

# package -> top-level names it must not import (its own code or third-party stacks).
FORBIDDEN: dict[str, frozenset[str]] = {
    "clo": frozenset(
        {"api", "worker", "persistence", "service", "service_cli", "redis"}
        | SERVICE_STACKS
        | DATABASE_STACKS
    ),
    "persistence": frozenset({"api", "worker", "clo", "service", "service_cli"} | SERVICE_STACKS),
    "service": frozenset({"api", "worker", "service_cli"}),
    "api": frozenset({"worker", "service_cli"}),
    "worker": frozenset({"api", "service_cli"}),
    "service_cli": frozenset(),
}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    module: str
    package: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.package}/ imports {self.module}"


def _module_of(path: Path) -> str:
    """Dotted module name of a file under ROOT (a package's __init__ is the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str | None, level: int, importer: str, is_package: bool) -> str:
    """`from ..x import y` inside `importer` -> the absolute module it names."""
    base = importer.split(".")
    # A module's own package is its parent; a package's __init__ is its own package.
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, module] if module else base)


def imported_modules(
    source: str, importer: str = "", is_package: bool = False
) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in `source`, at any depth."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append(
                    (node.lineno, _resolve_relative(node.module, node.level, importer, is_package))
                )
            else:
                found.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            if node.args and isinstance(node.args[0], ast.Constant):
                if isinstance(node.args[0].value, str):
                    found.append((node.lineno, node.args[0].value))
    return sorted(found)


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"__import__", "import_module"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def check_source(source: str, path: str, package: str, importer: str = "") -> list[Violation]:
    """The imports in `source` (a file of `package`) that the rules forbid."""
    forbidden = FORBIDDEN[package]
    is_package = path.endswith("__init__.py")
    return [
        Violation(path, line, module, package)
        for line, module in imported_modules(source, importer or package, is_package)
        if module.split(".")[0] in forbidden
    ]


def check_package(package: str) -> list[Violation]:
    """Every forbidden import in every .py file under ROOT/package."""
    found: list[Violation] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        found += check_source(path.read_text(), rel, package, _module_of(path))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_the_layer_rules(package: str) -> None:
    if not (ROOT / package).is_dir():
        pytest.skip(f"no {package}/ in this checkout")
    violations = check_package(package)
    assert not violations, "forbidden imports:\n" + "\n".join(map(str, violations))


def test_every_package_has_a_rule() -> None:
    """A new top-level package of our own gets a rule before it gets code."""
    ours = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and (p / "__init__.py").is_file() and p.name not in {"tests", "bench"}
    }
    assert ours <= set(FORBIDDEN), f"no import rule for {sorted(ours - set(FORBIDDEN))}"


# ---- the checker itself, on synthetic sources ---------------------------------------------

SNIPPET = """\
import os
import sqlalchemy.orm
from clo.languages import get_language

def late():
    from worker.enqueue import enqueue_job
    import importlib
    importlib.import_module("api.app")

if TYPE_CHECKING:
    from persistence.models import Job
"""


def test_checker_finds_top_level_function_level_and_dynamic_imports() -> None:
    found = check_source(SNIPPET, "clo/x.py", "clo", "clo.x")
    assert [(v.line, v.module) for v in found] == [
        (2, "sqlalchemy.orm"),
        (6, "worker.enqueue"),
        (8, "api.app"),
        (11, "persistence.models"),
    ]
    assert str(found[1]) == "clo/x.py:6: clo/ imports worker.enqueue"


def test_checker_resolves_relative_imports() -> None:
    # persistence/repositories/jobs.py: `..settings` is persistence.settings (allowed).
    source = "from ..settings import Settings\nfrom . import tenants\n"
    assert check_source(source, "persistence/repositories/jobs.py", "persistence",
                        "persistence.repositories.jobs") == []  # fmt: skip
    assert imported_modules(source, "persistence.repositories.jobs") == [
        (1, "persistence.settings"),
        (2, "persistence.repositories"),
    ]
    # An __init__ is its own package: `from .x import y` there is package.x.
    assert imported_modules("from .db import x\n", "persistence", is_package=True) == [
        (1, "persistence.db")
    ]


def test_checker_passes_allowed_imports_and_each_rule_bites() -> None:
    assert check_source("import torch\nfrom clo import pairs\n", "clo/a.py", "clo") == []
    assert check_source("from persistence.db import x\n", "api/a.py", "api") == []
    assert check_source("from clo.pipeline import x\n", "worker/a.py", "worker") == []
    bad = {
        "persistence": "from clo.checksum import sha256_file\n",
        "api": "from worker.enqueue import enqueue_job\n",
        "worker": "import api.app\n",
        "service": "from worker import runner\n",
    }
    for package, source in bad.items():
        assert len(check_source(source, f"{package}/a.py", package)) == 1, package
    assert check_source("from fastapi import FastAPI\n", "persistence/a.py", "persistence")
    assert check_source("import redis\n", "clo/a.py", "clo")
