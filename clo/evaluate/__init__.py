"""The evaluation stage: right-language rate, preference accuracy, benchmarks, judged win rate.

`evaluate(...)` returns an `EvaluationReport`; `report.model_dump(mode="json")` is what the
service stores and serves.
"""

from clo.evaluate.compare import compare_reports
from clo.evaluate.config import EvalConfig
from clo.evaluate.judge import LocalJudge, OpenAIJudge
from clo.evaluate.report import SCHEMA_VERSION, EvaluationReport
from clo.evaluate.stage import Baseline, evaluate

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
