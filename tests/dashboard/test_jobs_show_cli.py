"""`clo jobs show` against the live API of the dashboard tests: a finished job prints base |
trained | Δ with 95% intervals for its evaluation's headline metrics; a job without an ETA
prints no "eta None"; a report from before base comparisons prints what it has."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from service_cli.jobs import evaluation_lines
from service_cli.main import app
from tests.support.evaluation_reports import legacy_report


def _show(base_url: str, key: str, job_id: str) -> str:
    result = CliRunner().invoke(
        app, ["jobs", "--api-url", base_url, "--api-key", key, "show", job_id]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _with_interval(c: dict[str, Any], side: str) -> str:
    interval = c[f"{side}_interval"]
    return f"{_pct(c[side])} [{_pct(interval['low'])}, {_pct(interval['high'])}]"


def _line(out: str, label: str) -> str:
    lines = [line for line in out.splitlines() if line.strip().startswith(label)]
    assert len(lines) == 1, out
    return lines[0]


def test_show_prints_base_trained_and_delta_with_intervals(  # type: ignore[no-untyped-def]
    base_url, make_tenant, finished_job, api
) -> None:
    tenant = make_tenant()
    job_id, _ = finished_job(tenant, seed=0)
    report = api.get(f"/v1/jobs/{job_id}/evaluation", headers=tenant.headers).json()["report"]
    metrics = report["versus_base"]["metrics"]

    out = _show(base_url, tenant.key, job_id)
    assert "base tiny-lm: 112 answers generated" in out
    assert "prompts: heldout:16, shipped:de@1a2b3c4d5e6f" in out
    header = _line(out, "metric")
    assert header.split()[1:4] == ["base", "trained", "Δ"]
    usable = metrics["usable_rate_target"]
    row = _line(out, "usable answers, target prompts")
    delta = f"+{100 * usable['delta']:.1f} pts [+{100 * usable['delta_low']:.1f}, "
    delta += f"+{100 * usable['delta_high']:.1f}]"
    assert row.index(_with_interval(usable, "base")) < row.index(_with_interval(usable, "trained"))
    assert row.index(_with_interval(usable, "trained")) < row.index(delta)
    assert row.rstrip().endswith("better, distinguishable")
    english = _line(out, "usable answers, English prompts")
    assert _with_interval(metrics["usable_rate_english"], "trained") in english
    assert english.rstrip().endswith("not distinguishable")
    lcb = metrics["pass_rate_target"]
    assert _with_interval(lcb, "base") in _line(out, "LCB pass rate, target prompts")
    nll = _line(out, "held-out NLL, target answers")
    assert nll.split()[4:6] == ["2.300", "2.100"]
    assert f"{metrics['nll_target']['delta']:+.3f} [" in nll
    assert usable["verdict"] in out  # the sentence, for the headline metric
    assert "None" not in out


def test_show_without_eta_or_evaluation_prints_no_none(  # type: ignore[no-untyped-def]
    base_url, make_tenant, submit, worker
) -> None:
    tenant = make_tenant()
    job_id = submit(tenant)
    sim = worker(job_id)
    sim.stage("training")
    sim.progress(3, 50)  # no ETA yet

    out = _show(base_url, tenant.key, job_id)
    assert "step 3/50  6.0%" in out
    assert "eta" not in out and "None" not in out
    assert "evaluation" not in out
    sim.progress(10, 50, eta=90.0)
    assert "step 10/50  20.0%  eta 90s" in _show(base_url, tenant.key, job_id)


def test_report_before_base_comparisons_prints_the_trained_figures() -> None:
    report = legacy_report()
    lines = evaluation_lines(report)
    assert "no base-model figures" in lines[0] and "report 1.0" in lines[0]
    assert "prompts: the held-out examples" in lines[0]
    text = "\n".join(lines)
    pass_rate = report["language"]["target_prompts"]["pass_rate"]
    assert _line(text, "LCB pass rate, target prompts").split()[-1] == _pct(pass_rate)
    assert _line(text, "usable answers, target prompts").split()[-1] == "-"
    assert "Δ" not in text
