"""`clo jobs ...`: submit, list, show, watch, cancel and download jobs over the HTTP API."""

from __future__ import annotations

import json
import os
import tarfile
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from clo.checksum import sha256_file
from clo.cli.app import app

jobs_app = typer.Typer(
    help="Talk to a CLO service: submit jobs, follow them, fetch adapters.", no_args_is_help=True
)
app.add_typer(jobs_app, name="jobs")
console = Console(stderr=True)

TERMINAL = {"succeeded", "failed", "cancelled"}
EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 2}
CHUNK = 1024 * 1024


class ApiError(Exception):
    """The API answered with an error body (or not at all)."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        self.status = status
        self.error = error
        where = f" (field: {error['param']})" if error.get("param") else ""
        code, message = error.get("code", "error"), error.get("message", "")
        super().__init__(f"{status} {code}: {message}{where}")


class JobsClient:
    """A thin httpx client for /v1/jobs (Bearer API key)."""

    def __init__(self, api_url: str, api_key: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            follow_redirects=True,
        )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(
                0, {"code": "unreachable", "message": f"cannot reach {self.http.base_url}: {exc}"}
            ) from exc
        if response.status_code >= 400:
            try:
                error = response.json().get("error") or {"message": response.text}
            except ValueError:
                error = {"message": response.text[:500]}
            raise ApiError(response.status_code, error)
        return response.json() if response.content else None

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.request("POST", "/v1/jobs", json=spec, headers=headers)

    def get(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/jobs/{job_id}")

    def list_jobs(self, **params: Any) -> dict[str, Any]:
        return self.request("GET", "/v1/jobs", params={k: v for k, v in params.items() if v})

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/jobs/{job_id}/cancel")

    def artifacts(self, job_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/v1/jobs/{job_id}/artifacts")


def describe_progress(job: dict[str, Any]) -> str:
    stage = job.get("stage") or "-"
    extra = ""
    if job["status"] == "queued" and job.get("queue_position"):
        extra = f" (position {job['queue_position']})"
    return f"{job['status']}{extra} · {stage}"


def watch_job(
    client: JobsClient,
    job_id: str,
    interval: float = 1.0,
    timeout: float | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Poll until the job ends, drawing a live progress bar per stage; returns the final job."""
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[steps]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=quiet, transient=False) as bar:
        task = bar.add_task("queued", total=None, steps="")
        while True:
            job = client.get(job_id)
            progress = job.get("progress") or {}
            total, step = progress.get("total_steps"), progress.get("step")
            steps = f"{step}/{total}" if step is not None and total else ""
            bar.update(
                task,
                description=describe_progress(job),
                total=total or None,
                completed=step or 0,
                steps=steps,
            )
            if job["status"] in TERMINAL:
                if job["status"] == "succeeded" and total:
                    bar.update(task, completed=total)
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(interval)


def download_artifact(client: JobsClient, job_id: str, name: str, out_dir: Path) -> Path:
    """Download one artifact, resuming a partial file with Range; verify its sha256."""
    listing = {a["name"]: a for a in client.artifacts(job_id)}
    if name not in listing:
        available = ", ".join(sorted(listing)) or "none yet"
        raise ApiError(
            404,
            {
                "code": "artifact_not_found",
                "message": f"job {job_id} has no artifact {name!r} ({available})",
            },
        )
    meta = listing[name]
    out_dir.mkdir(parents=True, exist_ok=True)
    target, partial = out_dir / name, out_dir / f"{name}.partial"
    if target.exists() and sha256_file(target) == meta["sha256"]:
        return target
    offset = partial.stat().st_size if partial.exists() else 0
    if offset > meta["size"]:
        partial.unlink()
        offset = 0
    headers = {"Range": f"bytes={offset}-"} if 0 < offset < meta["size"] else {}
    if offset < meta["size"]:
        with client.http.stream("GET", meta["download_url"], headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise ApiError(response.status_code, {"message": response.text[:500]})
            mode = "ab" if response.status_code == 206 else "wb"  # 200: the server restarted it
            with open(partial, mode) as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
    actual = sha256_file(partial)
    if actual != meta["sha256"]:
        partial.unlink()
        raise ApiError(
            0,
            {
                "code": "checksum_mismatch",
                "message": f"{name}: sha256 {actual} != expected {meta['sha256']}; "
                "the partial file was removed, run download again",
            },
        )
    os.replace(partial, target)
    return target


def extract_bundle(archive: Path, dest: Path) -> Path:
    """Unpack a tar bundle with the 'data' filter (no links out, no absolute paths)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


# ---- commands --------------------------------------------------------------------------


def _client(ctx: typer.Context) -> JobsClient:
    return ctx.obj  # type: ignore[no-any-return]


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
    if not api_key:
        raise typer.BadParameter("set CLO_API_KEY or pass --api-key", param_hint="--api-key")
    ctx.obj = JobsClient(api_url, api_key)
    ctx.call_on_close(ctx.obj.close)


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
    progress = job.get("progress") or {}
    typer.echo(f"{job['id']}  {describe_progress(job)}  attempt {job['attempt']}")
    if progress.get("step") is not None:
        typer.echo(
            f"  step {progress['step']}/{progress.get('total_steps')}  "
            f"{progress.get('percent')}%  eta {progress.get('eta_seconds')}s"
        )
    _print_outcome(job)


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
