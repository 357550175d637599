"""The evaluation stage: right-language rate, preference accuracy, benchmarks, judged win rate.

`evaluate(...)` returns an `EvaluationReport`; `report.model_dump(mode="json")` is what the
service stores and serves.

The names below load on first use (PEP 562), so `clo.evaluate.report` and
`clo.evaluate.compare` (pydantic only: the API compares stored reports) import without torch;
`evaluate`/`Baseline` pull in the torch-backed stage only when asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clo.evaluate.compare import compare_reports
    from clo.evaluate.config import EvalConfig
    from clo.evaluate.judge import LocalJudge, OpenAIJudge
    from clo.evaluate.report import SCHEMA_VERSION, EvaluationReport
    from clo.evaluate.stage import Baseline, evaluate

_SOURCES = {
    "compare_reports": "compare",
    "EvalConfig": "config",
    "LocalJudge": "judge",
    "OpenAIJudge": "judge",
    "SCHEMA_VERSION": "report",
    "EvaluationReport": "report",
    "Baseline": "stage",
    "evaluate": "stage",
}


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{source}"), name)
    globals()[name] = value
    return value


__all__ = [
    "SCHEMA_VERSION",
    "Baseline",
    "EvalConfig",
    "EvaluationReport",
    "LocalJudge",
    "OpenAIJudge",
    "compare_reports",
    "evaluate",
]
