"""`clo train`: train a local model on parallel JSONL with CLO and export the adapter.

Every TrainConfig field becomes an option (`--learning-rate`, `--trainable`, ...) with the
field's help text, generated from the model so the CLI never falls behind the config.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import types
import typing
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from clo.cli.app import app
from clo.config import TrainConfig

logger = logging.getLogger(__name__)


def _option_type(annotation: Any) -> Any:
    """Typer-friendly type: Literals become str (pydantic validates the choice)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return str
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _option_type(inner[0]) | None if len(inner) == 1 else str
    return annotation


def _config_parameters() -> list[inspect.Parameter]:
    params = []
    for name, field in TrainConfig.model_fields.items():
        choices = ""
        if typing.get_origin(field.annotation) is typing.Literal:
            choices = f" (one of: {', '.join(map(str, typing.get_args(field.annotation)))})"
        help_text = (field.description or name.replace("_", " ").capitalize()) + choices
        flag = "--" + name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}"] if field.annotation is bool else [flag]
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=_option_type(field.annotation),
                default=typer.Option(
                    field.default, *decls, help=help_text, rich_help_panel="Training config"
                ),
            )
        )
    return params


def quads_hash(quads: list[Any]) -> str:
    """sha256 of the canonical JSON of the training quadruples."""
    blob = json.dumps([q.to_dict() for q in quads], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def train_command(
    model: Path,
    data: Path,
    out: Path,
    revision: str | None,
    heldout: int,
    merged: bool,
    **config_values: Any,
) -> None:
    """Train MODEL (a local directory or hub id) on DATA (parallel JSONL) and export to OUT."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from clo.errors import CloError
    from clo.export import export_adapter, export_merged
    from clo.loading import load_model_and_tokenizer
    from clo.pairs import split_heldout
    from clo.seed import load_parallel_jsonl
    from clo.trainer import preference_metrics, train

    try:
        config = TrainConfig(**config_values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "config"
        raise typer.BadParameter(first["msg"], param_hint="--" + field.replace("_", "-")) from exc
    try:
        quads = load_parallel_jsonl(data)
        train_q, held_q = split_heldout(quads, size=heldout, seed=config.seed)
        lm, tok = load_model_and_tokenizer(model, revision=revision)
        base = (
            preference_metrics(
                lm,
                tok,
                held_q,
                max_length=config.max_length,
                max_prompt_length=config.max_prompt_length,
            )
            if held_q
            else None
        )
        with Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.4f}"),
            TimeRemainingColumn(),
        ) as bar:
            task = bar.add_task("train", total=None, loss=float("nan"))

            def progress(m: dict[str, Any]) -> None:
                bar.update(task, completed=m["step"], total=m["total_steps"], loss=m["loss"])

            result = train(
                lm,
                tok,
                train_q,
                config,
                out / "work",
                progress=progress,
                reference_cache_dir=out / "work" / "reference",
            )
        metrics = dict(result.metrics)
        if base is not None:
            after = preference_metrics(
                result.model,
                tok,
                held_q,
                reference=base["logps"],
                max_length=config.max_length,
                max_prompt_length=config.max_prompt_length,
            )
            metrics.update({f"heldout_{k}": v for k, v in after.items() if k != "logps"})
        meta: dict[str, Any] = dict(
            config=config,
            base_model=str(model),
            base_revision=revision,
            data_hash=quads_hash(quads),
            metrics=metrics,
        )
        target = out / ("model" if merged or config.trainable == "full" else "adapter")
        if target.name == "model":
            sums = export_merged(result.model, tok, target, **meta)
        else:
            sums = export_adapter(result.model, tok, target, **meta)
    except CloError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        json.dumps(
            {
                "output": str(target),
                "metrics": metrics,
                "truncation": result.truncation,
                "files": sums,
            },
            indent=2,
        )
    )


def _build() -> None:
    fixed = [
        inspect.Parameter(
            "model",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Path,
            default=typer.Argument(..., help="Base model directory or hub id."),
        ),
        inspect.Parameter(
            "data",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Path,
            default=typer.Argument(..., help="Parallel JSONL: x_en, y_en, x_tgt, y_tgt per line."),
        ),
        inspect.Parameter(
            "out",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Path,
            default=typer.Option(
                ..., "--out", "-o", help="Output directory (work files + export)."
            ),
        ),
        inspect.Parameter(
            "revision",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=str | None,
            default=typer.Option(None, help="Model revision (hub models)."),
        ),
        inspect.Parameter(
            "heldout",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=int,
            default=typer.Option(
                0, min=0, help="Examples held out to report preference accuracy on."
            ),
        ),
        inspect.Parameter(
            "merged",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=bool,
            default=typer.Option(
                False,
                "--merged/--adapter",
                help="Export a merged model instead of an adapter (always for trainable=full).",
            ),
        ),
    ]

    def command(**kwargs: Any) -> None:
        names = {p.name for p in fixed}
        train_command(
            **{k: v for k, v in kwargs.items() if k in names},
            **{k: v for k, v in kwargs.items() if k not in names},
        )

    command.__signature__ = inspect.Signature(fixed + _config_parameters())  # type: ignore[attr-defined]
    command.__doc__ = train_command.__doc__
    app.command("train")(command)


_build()
