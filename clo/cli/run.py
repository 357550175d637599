"""`clo run`: one whole job (translate, train, evaluate, package) on this machine, no service."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from clo.cli.app import app
from clo.events import Event, StageStarted, StepDone

console = Console(stderr=True)


class ProgressBar:
    """The pipeline's progress hook drawn as one rich bar per stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, event: Event) -> None:
        if event.stage not in self.tasks:
            resumed = isinstance(event, StageStarted) and event.resumed
            label = f"{event.stage} (resumed)" if resumed else event.stage
            self.tasks[event.stage] = self.progress.add_task(label, total=None, info="")
        if isinstance(event, StepDone):
            loss = event.metrics.get("loss")
            info = f"loss {loss:.4f}" if loss is not None else ""
            self.progress.update(
                self.tasks[event.stage], completed=event.step, total=event.total_steps, info=info
            )


@app.command("run")
def run(
    base_model: Annotated[str, typer.Option(help="Local folder or hub id of the base model.")],
    target_language: Annotated[
        str, typer.Option("--target-language", "--lang", help="Target language code, e.g. sw.")
    ],
    data_size: Annotated[int, typer.Option(help="Number of English seed examples.")],
    workdir: Annotated[Path, typer.Option(help="Where stages write; rerun to resume.")] = Path(
        "runs/job"
    ),
    seed_source: Annotated[str, typer.Option(help="builtin, oasst1, file, parallel.")] = "builtin",
    seed_file: Annotated[Path | None, typer.Option(help="JSONL seed set (source file).")] = None,
    translator: Annotated[str, typer.Option(help="Translation model folder or hub id.")] = (
        "facebook/m2m100_1.2B"
    ),
    quality_check: Annotated[str, typer.Option(help="drop or off (tiny demo models).")] = "drop",
    spec_file: Annotated[
        Path | None,
        typer.Option(
            "--spec", help="JSON job spec (the POST /v1/jobs body); options above fill it."
        ),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per micro-batch.")] = None,
    heldout_size: Annotated[int | None, typer.Option(help="Examples held out.")] = None,
    prompt_set_limit: Annotated[
        int | None, typer.Option(help="Shipped evaluation prompts used (0: none).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
) -> None:
    """Run a whole CLO job locally and print where the adapter bundle is."""
    from clo.errors import CloError
    from clo.pipeline import PipelineHooks, RunInputs, run_pipeline
    from clo.resolve import LocalCatalog, resolve_job
    from clo.spec import JobSpec

    raw: dict[str, Any] = json.loads(spec_file.read_text()) if spec_file else {}
    raw.update(base_model=base_model, target_language=target_language, data_size=data_size)
    raw.setdefault("seed_data", {})["source"] = seed_source
    if seed_file is not None and seed_source == "file":
        raw["seed_data"]["file_id"] = str(seed_file)
    raw.setdefault("translator", {}).update(model=translator, quality_check=quality_check)
    hp = {"max_steps": max_steps, "batch_size": batch_size}
    raw.setdefault("hyperparameters", {}).update({k: v for k, v in hp.items() if v is not None})
    evaluation = {"heldout_size": heldout_size, "prompt_set_limit": prompt_set_limit}
    raw.setdefault("evaluation", {}).update({k: v for k, v in evaluation.items() if v is not None})
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise typer.BadParameter(f"{field}: {first['msg']}") from exc
    if spec.seed_data.source == "file" and seed_file is None:
        raise typer.BadParameter(
            "give --seed-file with --seed-source file", param_hint="--seed-file"
        )
    try:
        resolved = resolve_job(spec, LocalCatalog())
    except CloError as exc:
        console.print(f"[red]error:[/red] {exc.param + ': ' if exc.param else ''}{exc}")
        raise typer.Exit(1) from exc
    inputs = RunInputs(seed_file=seed_file, device=device)
    started = time.monotonic()
    columns = (
        TextColumn("{task.description:>12}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            hooks = PipelineHooks(progress=ProgressBar(progress))
            result = run_pipeline(resolved, workdir, hooks, inputs)
    except CloError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    typer.echo(f"adapter bundle: {result.bundle_dir}")
    if result.merged_dir is not None:
        typer.echo(f"merged model: {result.merged_dir}")
    typer.echo(f"took {time.monotonic() - started:.1f}s")
