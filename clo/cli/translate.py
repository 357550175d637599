"""`clo translate`: English seed JSONL -> quadruple JSONL; `clo tiny-m2m100`: offline MT model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from clo.cli.app import app
from clo.errors import CloError

_err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    _err.print(f"[red]Error:[/red] {message}")
    return typer.Exit(2)


def _report_table(report: dict[str, Any]) -> Table:
    table = Table(title="Translation quality report", show_header=False)
    for key in ("target_language", "model", "quality_check", "n_input", "n_kept", "n_dropped"):
        table.add_row(key, str(report[key]))
    label = "flagged" if report["quality_check"] == "report" else "dropped"
    counts = report["flagged_by_reason"] if label == "flagged" else report["dropped_by_reason"]
    for reason, count in counts.items():
        table.add_row(f"  {label}: {reason}", str(count))
    for key in (
        "retried",
        "recovered_by_retry",
        "segments_total",
        "segments_translated",
        "fallback_segments",
        "cache_hits",
        "model_calls",
        "seconds",
        "sentences_per_second",
    ):
        table.add_row(key, str(report[key]))
    return table


@app.command("translate")
def translate(
    input_path: Annotated[
        Path, typer.Argument(help="English seed JSONL: prompt/response or messages.")
    ],
    target: Annotated[
        str, typer.Option("--target", "-t", help="Target language: de, sw, Yoruba...")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the quadruple JSONL.")],
    model: Annotated[
        str, typer.Option(help="M2M100/NLLB-200 hub id or local dir.")
    ] = "facebook/m2m100_1.2B",
    revision: Annotated[str | None, typer.Option(help="Hub revision to pin.")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Reuse translations across runs (SQLite file store).")
    ] = None,
    batch_tokens: Annotated[int, typer.Option(help="Token budget per batch.")] = 4096,
    beams: Annotated[int, typer.Option(help="Beam size.")] = 4,
    quality_check: Annotated[
        str, typer.Option(help="drop | report | off (off only for the random-weight tiny model).")
    ] = "drop",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1...")] = "auto",
    backend: Annotated[
        str, typer.Option(help="transformers | ctranslate2 (pip extra ct2; docs/PERFORMANCE.md).")
    ] = "transformers",
    compute_type: Annotated[
        str, typer.Option(help="ctranslate2 only: auto (as dtype), float32, int8, int8_float16...")
    ] = "auto",
    report_json: Annotated[
        Path | None, typer.Option(help="Also write the report as JSON here.")
    ] = None,
) -> None:
    """Translate seed prompts/responses into the target language, check and write quadruples."""
    from pydantic import ValidationError

    from clo.seed import load_jsonl
    from clo.translate import (
        Decoding,
        FileTranslationCache,
        TranslatorConfig,
        make_translator,
        translate_seed,
    )

    try:
        config = TranslatorConfig(
            model=model,
            revision=revision,
            device=device,
            batch_tokens=batch_tokens,
            decoding=Decoding(num_beams=beams),
            quality_check=quality_check,
            backend=backend,
            compute_type=compute_type,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise _fail(f"{field}: {first['msg']}") from None
    try:
        examples = load_jsonl(input_path)
        translator = make_translator(config)
        cache = FileTranslationCache(cache_dir) if cache_dir else None
        with Progress(
            TextColumn("translating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=_err,
        ) as bar:
            task = bar.add_task("segments", total=None)

            def on_progress(event: dict[str, Any]) -> None:
                bar.update(task, completed=event["step"], total=max(event["total_steps"], 1))

            result = translate_seed(examples, target, translator, cache=cache, progress=on_progress)
    except CloError as exc:
        raise _fail(str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for q in result.quadruples:
            fh.write(json.dumps(q.to_dict(), ensure_ascii=False) + "\n")
    if report_json is not None:
        report_json.write_text(json.dumps(result.report, indent=2, ensure_ascii=False))
    Console().print(_report_table(result.report))
    typer.echo(f"{len(result.quadruples)} quadruples written to {out}")


@app.command("tiny-m2m100")
def tiny_m2m100(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write model and tokenizer to.")],
    arch: Annotated[
        str, typer.Option(help="m2m100 (M2M100Tokenizer) or nllb (NllbTokenizer).")
    ] = "m2m100",
    d_model: Annotated[int, typer.Option(help="Model width.")] = 32,
    layers: Annotated[int, typer.Option(help="Encoder and decoder layers.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed for the random weights.")] = 0,
) -> None:
    """Build a tiny random-weight translation model with a locally trained tokenizer."""
    from clo.tiny_m2m100 import build_tiny_m2m100, build_tiny_nllb

    builders = {"m2m100": build_tiny_m2m100, "nllb": build_tiny_nllb}
    if arch not in builders:
        raise typer.BadParameter("use m2m100 or nllb", param_hint="--arch")
    path = builders[arch](out_dir, d_model=d_model, layers=layers, seed=seed)
    typer.echo(f"tiny {arch} model written to {path} (random weights: use --quality-check off)")
