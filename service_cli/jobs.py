"""`clo jobs ...`: submit, list, show, watch, cancel and download jobs over the HTTP API."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from service_cli.jobs_client import (
    ApiError,
    JobsClient,
    console,
    describe_progress,
    download_artifact,
    extract_bundle,
    watch_job,
)

EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 2}

jobs_app = typer.Typer(
    help="Talk to a CLO service: submit jobs, follow them, fetch adapters.", no_args_is_help=True
)


@dataclass
class _Connection:
    """Where the API is; the client is made on first use, so `--help` needs no key."""

    api_url: str
    api_key: str
    client: JobsClient | None = None


def _client(ctx: typer.Context) -> JobsClient:
    conn: _Connection = ctx.obj
    if conn.client is None:
        if not conn.api_key:
            raise typer.BadParameter("set CLO_API_KEY or pass --api-key", param_hint="--api-key")
        conn.client = JobsClient(conn.api_url, conn.api_key)
        ctx.find_root().call_on_close(conn.client.close)
    return conn.client


def _fail(exc: Exception) -> NoReturn:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


@jobs_app.callback()
def _connect(
    ctx: typer.Context,
    api_url: str = typer.Option(
        "http://127.0.0.1:8000", envvar="CLO_API_URL", help="Base URL of the CLO API."
    ),
    api_key: str = typer.Option("", envvar="CLO_API_KEY", help="API key (Bearer)."),
) -> None:
    ctx.obj = _Connection(api_url, api_key)


@jobs_app.command("submit")
def submit(
    ctx: typer.Context,
    base_model: str = typer.Option(None, help="Allow-listed base model name."),
    target_language: str = typer.Option(
        None, "--target-language", "--lang", help="Target language code, e.g. sw."
    ),
    data_size: int = typer.Option(None, help="Number of English seed examples."),
    method: str = typer.Option(None, help="clo (default), sft, sft+dpo, dpo."),
    trainable: str = typer.Option(None, help="attention, lora or full (default: recommended)."),
    seed_source: str = typer.Option(None, help="builtin, oasst1, file or parallel."),
    file_id: str = typer.Option(None, help="Uploaded file id (with --seed-source file)."),
    translator: str = typer.Option(None, help="Translation model name."),
    quality_check: str = typer.Option(None, help="drop or off."),
    max_steps: int = typer.Option(None, help="Stop training after this many steps."),
    epochs: float = typer.Option(None, help="Passes over the data."),
    batch_size: int = typer.Option(None, help="Examples per micro-batch."),
    learning_rate: float = typer.Option(None, help="Peak learning rate."),
    heldout_size: int = typer.Option(None, help="Examples held out for evaluation."),
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="JSON job spec; options override it.")
    ] = None,
    idempotency_key: str = typer.Option(None, help="Retries with the same key return one job."),
    watch: bool = typer.Option(False, "--watch", help="Follow the job until it ends."),
) -> None:
    """Submit a job and print its id."""
    spec: dict[str, Any] = json.loads(spec_file.read_text()) if spec_file else {}
    top = {
        "base_model": base_model,
        "target_language": target_language,
        "data_size": data_size,
        "method": method,
        "trainable": trainable,
    }
    spec.update({k: v for k, v in top.items() if v is not None})
    nested: dict[str, dict[str, Any]] = {
        "seed_data": {"source": seed_source, "file_id": file_id},
        "translator": {"model": translator, "quality_check": quality_check},
        "hyperparameters": {
            "max_steps": max_steps,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
        },
        "evaluation": {"heldout_size": heldout_size},
    }
    for section, values in nested.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            spec[section] = {**spec.get(section, {}), **given}
    client = _client(ctx)
    try:
        job = client.submit(spec, idempotency_key)
        typer.echo(job["id"])
        if watch:
            final = watch_job(client, job["id"])
            _print_outcome(final)
            raise typer.Exit(EXIT_CODES[final["status"]])
    except ApiError as exc:
        _fail(exc)


@jobs_app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: str = typer.Option(None, help="Only jobs with this status."),
    target_language: str = typer.Option(None, "--lang", help="Only this target language."),
    base_model: str = typer.Option(None, help="Only this base model."),
    limit: int = typer.Option(20, min=1, max=100, help="Jobs per page."),
    all_pages: bool = typer.Option(False, "--all", help="Follow the cursor through every page."),
) -> None:
    """List jobs, newest first."""
    client, cursor = _client(ctx), None
    table = Table("id", "status", "stage", "model", "lang", "progress", "created")
    try:
        while True:
            page = client.list_jobs(
                status=status,
                target_language=target_language,
                base_model=base_model,
                limit=limit,
                cursor=cursor,
            )
            for job in page["data"]:
                pct = (job.get("progress") or {}).get("percent")
                table.add_row(
                    job["id"],
                    job["status"],
                    job.get("stage") or "",
                    job["base_model"],
                    job["target_language"],
                    "" if pct is None else f"{pct:.0f}%",
                    job["created_at"][:19],
                )
            cursor = page.get("next_cursor")
            if not (all_pages and page.get("has_more") and cursor):
                break
    except ApiError as exc:
        _fail(exc)
    Console().print(table)


@jobs_app.command("show")
def show(ctx: typer.Context, job_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one job (status, progress, error, artifacts)."""
    try:
        job = _client(ctx).get(job_id)
    except ApiError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(job, indent=2))
        return
    typer.echo(f"{job['id']}  {describe_progress(job)}  attempt {job['attempt']}")
    line = progress_line(job.get("progress") or {})
    if line:
        typer.echo(line)
    _print_outcome(job)
    if job.get("evaluation_ready"):
        try:
            evaluation = _client(ctx).request("GET", f"/v1/jobs/{job_id}/evaluation")
        except ApiError as exc:
            typer.echo(f"  evaluation: could not be read ({exc})")
            return
        for text in evaluation_lines(evaluation["report"]):
            typer.echo(text)


def progress_line(progress: dict[str, Any]) -> str:
    """The progress line, e.g. `  step 10/100  10.0%  eta 90s`: the parts the job has (no
    step yet: empty; no ETA until a few steps have run: none)."""
    if progress.get("step") is None:
        return ""
    parts = [f"step {progress['step']}/{progress.get('total_steps') or '?'}"]
    if progress.get("percent") is not None:
        parts.append(f"{progress['percent']:.1f}%")
    if progress.get("eta_seconds") is not None:
        parts.append(f"eta {progress['eta_seconds']:.0f}s")
    return "  " + "  ".join(parts)


# The headline rows of an evaluation: versus_base metric -> label (report schema 1.2)
HEADLINE = {
    "usable_rate_target": "usable answers, target prompts",
    "usable_rate_english": "usable answers, English prompts",
    "pass_rate_target": "LCB pass rate, target prompts",
    "pass_rate_english": "LCB pass rate, English prompts",
    "nll_target": "held-out NLL, target answers",
}
COLUMNS = (32, 22, 22, 26)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _side(c: dict[str, Any], side: str) -> str:
    """A rate with its 95% interval, "35.7% [24.5%, 48.8%]", or a mean as it is."""
    value = c.get(side)
    if c.get("kind") != "rate":
        return "-" if value is None else f"{value:.3f}"
    interval = c.get(f"{side}_interval") or {}
    if value is None or interval.get("low") is None or interval.get("high") is None:
        return _pct(value)
    return f"{_pct(value)} [{_pct(interval['low'])}, {_pct(interval['high'])}]"


def _delta(c: dict[str, Any]) -> str:
    """trained - base with its paired interval: "+28.6 pts [+5.4, +50.0]" or "-0.200 [...]"."""
    if c.get("delta") is None:
        return "-"
    rate = c.get("kind") == "rate"
    scale, fmt, unit = (100.0, "+.1f", " pts") if rate else (1.0, "+.3f", "")
    text = f"{scale * c['delta']:{fmt}}{unit}"
    if c.get("delta_low") is None or c.get("delta_high") is None:
        return text
    return f"{text} [{scale * c['delta_low']:{fmt}}, {scale * c['delta_high']:{fmt}}]"


def _verdict(c: dict[str, Any]) -> str:
    if c.get("distinguishable") is None:
        return ""
    if not c["distinguishable"]:
        return "not distinguishable"
    better = (c["delta"] > 0) == bool(c.get("higher_is_better"))
    return "better, distinguishable" if better else "worse, distinguishable"


def _row(*cells: str) -> str:
    padded = [cell.ljust(width) for cell, width in zip(cells, COLUMNS, strict=False)]
    return ("  " + "  ".join([*padded, *cells[len(COLUMNS) :]])).rstrip()


def _base_source(vb: dict[str, Any]) -> str:
    base = vb.get("base") or {}
    if base.get("cached"):
        return f"base {base.get('model')}: from the cache"
    return f"base {base.get('model')}: {base.get('generated_answers', 0)} answers generated"


def evaluation_lines(report: dict[str, Any]) -> list[str]:
    """The evaluation's headline metrics as base | trained | delta lines with 95% intervals;
    a report without versus_base (schema < 1.2) gets the trained figures and a note."""
    sources = ", ".join(report.get("prompt_sources") or []) or "the held-out examples"
    vb = report.get("versus_base") or {}
    metrics = vb.get("metrics") or {}
    if not metrics:
        return _trained_only(report, sources)
    lines = [
        f"  evaluation (report {report.get('schema_version')}): {_base_source(vb)}; "
        f"prompts: {sources}",
        _row("metric", "base", "trained", "Δ (trained - base)", "verdict"),
    ]
    for name, label in HEADLINE.items():
        c = metrics.get(name)
        if c:
            lines.append(_row(label, _side(c, "base"), _side(c, "trained"), _delta(c), _verdict(c)))
    lines.append("  [brackets]: 95% intervals (Wilson; Δ: paired bootstrap over the prompts)")
    usable = metrics.get("usable_rate_target") or {}
    if usable.get("verdict"):
        lines.append(f"  usable target-language answers: {usable['verdict']}")
    return lines


def _trained_only(report: dict[str, Any], sources: str) -> list[str]:
    lang = report.get("language") or {}
    nll = ((report.get("preference") or {}).get("nll") or {}).get("target") or {}
    values = {
        "usable_rate_target": (lang.get("target_prompts") or {}).get("usable_rate"),
        "usable_rate_english": (lang.get("english_prompts") or {}).get("usable_rate"),
        "pass_rate_target": (lang.get("target_prompts") or {}).get("pass_rate"),
        "pass_rate_english": (lang.get("english_prompts") or {}).get("pass_rate"),
    }
    lines = [
        f"  evaluation (report {report.get('schema_version')}): no base-model figures "
        f"(written before evaluations scored the base model); prompts: {sources}",
        _row("metric", "trained"),
    ]
    lines += [_row(HEADLINE[name], _pct(value)) for name, value in values.items()]
    nll_value = nll.get("nll")
    lines.append(_row(HEADLINE["nll_target"], "-" if nll_value is None else f"{nll_value:.3f}"))
    return lines


def _print_outcome(job: dict[str, Any]) -> None:
    if job.get("error"):
        err = job["error"]
        typer.echo(f"  error: {err['type']}/{err['code']}: {err['message']}")
    for art in job.get("artifacts") or []:
        typer.echo(f"  artifact {art['name']}  {art['size']} bytes  sha256 {art['sha256']}")


@jobs_app.command("watch")
def watch(
    ctx: typer.Context,
    job_id: str,
    interval: float = typer.Option(1.0, help="Seconds between polls."),
) -> None:
    """Follow a job with a live progress bar; exit 0 succeeded, 1 failed, 2 cancelled."""
    try:
        final = watch_job(_client(ctx), job_id, interval)
    except ApiError as exc:
        _fail(exc)
    _print_outcome(final)
    raise typer.Exit(EXIT_CODES[final["status"]])


@jobs_app.command("cancel")
def cancel(ctx: typer.Context, job_id: str) -> None:
    """Ask a job to stop (training stops within one step; finished artifacts are kept)."""
    try:
        job = _client(ctx).cancel(job_id)
    except ApiError as exc:
        _fail(exc)
    typer.echo(f"{job['id']}  {job['status']}")


@jobs_app.command("download")
def download(
    ctx: typer.Context,
    job_id: str,
    name: str = typer.Option("adapter.tar", help="Artifact name."),
    out: Annotated[Path, typer.Option(help="Folder to write into.")] = Path("."),
    extract: bool = typer.Option(False, help="Also unpack a .tar bundle next to it."),
) -> None:
    """Download an artifact (resumable), verify its sha256, optionally unpack it."""
    try:
        path = download_artifact(_client(ctx), job_id, name, out)
    except ApiError as exc:
        _fail(exc)
    typer.echo(f"{path}  sha256 verified")
    if extract and path.suffix == ".tar":
        typer.echo(f"unpacked to {extract_bundle(path, out / path.stem)}")
