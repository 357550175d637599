"""`clo evaluate`: score a model (+ adapter) on held-out data and write the JSON report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from clo.cli.app import app


def _parse_files(values: list[str]) -> dict[str, str]:
    files = {}
    for value in values:
        key, sep, path = value.partition("=")
        if not sep or not path:
            raise typer.BadParameter(
                f"use BENCHMARK:LANG=PATH, got {value!r}", param_hint="--benchmark-file"
            )
        files[key] = path
    return files


def _load(model_dir: Path, adapter: Path | None, device: str | None, dtype: str | None) -> Any:
    from clo.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_dir, dtype=dtype, device=device)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    return model, tokenizer


def _fmt(value: float | None, pct: bool = True) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if pct else f"{value:.3f}"


def _with_interval(value: float | None, interval: Any, pct: bool) -> str:
    text = _fmt(value, pct)
    if interval is None or value is None:
        return text
    return f"{text} [{_fmt(interval.low, pct)}, {_fmt(interval.high, pct)}]"


def _delta(c: Any) -> str:
    if c.delta is None:
        return "-"
    scale, fmt, unit = (100.0, "+.1f", " pts") if c.kind == "rate" else (1.0, "+.3g", "")
    text = f"{scale * c.delta:{fmt}}{unit}"
    if c.delta_low is None or c.delta_high is None:
        return text
    return f"{text} [{scale * c.delta_low:{fmt}}, {scale * c.delta_high:{fmt}}]"


def versus_base_rows(report: Any) -> list[tuple[str, str, str, str, str]]:
    """(metric, base, trained, delta with interval, McNemar p) per versus_base metric."""
    vb = report.versus_base
    if vb is None:
        return []
    rows = []
    for name, c in vb.metrics.items():
        pct = c.kind == "rate"
        rows.append(
            (
                name + (" *" if c.distinguishable else ""),
                _with_interval(c.base, c.base_interval, pct),
                _with_interval(c.trained, c.trained_interval, pct),
                _delta(c),
                "-" if c.p_value is None else f"{c.p_value:.3g}",
            )
        )
    return rows


def _summary_rows(report: Any) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if report.language:
        lang = report.language
        rows += [
            ("usable answers, target prompts", _fmt(lang.target_prompts.usable_rate)),
            ("usable answers, English prompts", _fmt(lang.english_prompts.usable_rate)),
            ("right-language rate, target prompts", _fmt(lang.target_prompts.pass_rate)),
            ("right-language rate, English prompts", _fmt(lang.english_prompts.pass_rate)),
            ("English bias (target prompts answered in English)", _fmt(lang.english_bias)),
        ]
    if report.preference:
        pref = report.preference
        for d, label in (("tgt", "target"), ("en", "English")):
            stats = pref.directions[d]
            rows.append((f"preference accuracy, {label} pairs", _fmt(stats.accuracy)))
            rows.append((f"reward margin, {label} pairs", _fmt(stats.reward_margin_mean, False)))
        rows.append(("perplexity, target responses", _fmt(pref.nll["target"].perplexity, False)))
    for b in report.benchmarks:
        rows.append((f"{b.benchmark} {b.language} (n={b.n})", _fmt(b.accuracy)))
    if report.judge:
        for key, res in report.judge.results.items():
            label = "target" if key == "tgt" else "English"
            se = f" ± {100 * res.stderr:.1f}" if res.stderr is not None else ""
            rows.append(
                (
                    f"win rate vs {report.judge.baseline}, {label} (W/T/L "
                    f"{res.wins}/{res.ties}/{res.losses})",
                    _fmt(res.win_rate) + se,
                )
            )
    for name, why in report.skipped.items():
        rows.append((f"skipped: {name}", why[:80]))
    return rows


@app.command("evaluate")
def evaluate_cmd(
    model_dir: Annotated[Path, typer.Argument(help="Base model directory or hub id.")],
    heldout: Annotated[
        Path,
        typer.Option(
            "--heldout",
            help="Held-out JSONL: x_en, y_en, x_tgt, y_tgt (or prompt/response + "
            "*_translated) per line.",
        ),
    ],
    target: Annotated[str, typer.Option("--target", "-t", help="Target language, e.g. de.")],
    adapter: Annotated[
        Path | None, typer.Option(help="PEFT adapter directory to evaluate.")
    ] = None,
    baseline_adapter: Annotated[
        Path | None,
        typer.Option(help="Judge against this adapter on the same base (default: the base model)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report JSON path.")] = Path(
        "evaluation.json"
    ),
    max_new_tokens: Annotated[int, typer.Option(help="Tokens generated per answer.")] = 128,
    batch_size: Annotated[int, typer.Option(help="Prompts / sequences per batch.")] = 8,
    benchmarks: Annotated[str, typer.Option(help="Comma list, or 'none'.")] = "belebele,mmmlu",
    benchmark_source: Annotated[str, typer.Option(help="auto | hub | local.")] = "auto",
    benchmark_file: Annotated[
        list[str] | None,
        typer.Option(help="BENCHMARK:LANG=PATH, a local file in the hub schema (repeatable)."),
    ] = None,
    benchmark_limit: Annotated[int, typer.Option(help="Items per benchmark and language.")] = 200,
    judge_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL, e.g. https://api.openai.com/v1.")
    ] = None,
    judge_model: Annotated[str | None, typer.Option(help="Judge model name.")] = None,
    judge_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the judge API key.")
    ] = "CLO_JUDGE_API_KEY",
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: best).")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 | bfloat16 | float16.")] = None,
    prompt_set_limit: Annotated[
        int,
        typer.Option(help="Shipped evaluation prompts of the language also answered (0: none)."),
    ] = 100,
    compare_base: Annotated[
        bool, typer.Option(help="Score the base model (the adapter disabled) beside it.")
    ] = True,
    base_cache: Annotated[
        Path | None,
        typer.Option(help="Folder caching the base model's answers and benchmark scores."),
    ] = None,
) -> None:
    """Right-language rate, preference accuracy, benchmarks and judged win rate."""
    from pydantic import ValidationError

    from clo.errors import CloError
    from clo.evaluate import Baseline, EvalConfig, OpenAIJudge, evaluate
    from clo.evaluate.base_cache import FileBaseCache
    from clo.evaluate.base_side import BaseModelId
    from clo.evaluate.stage_base import BaseSide
    from clo.seed import load_parallel_jsonl

    names = (
        []
        if benchmarks.strip().lower() == "none"
        else [b.strip() for b in benchmarks.split(",") if b.strip()]
    )
    try:
        config = EvalConfig.model_validate(
            {
                "max_new_tokens": max_new_tokens,
                "generation_batch_size": batch_size,
                "scoring_batch_size": batch_size,
                "benchmarks": names,
                "benchmark_source": benchmark_source,
                "benchmark_files": _parse_files(benchmark_file or []),
                "benchmark_limit": benchmark_limit,
                "prompt_set_limit": prompt_set_limit,
                "compare_base": compare_base,
            }
        )
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if (judge_url is None) != (judge_model is None):
        raise typer.BadParameter(
            "give both --judge-url and --judge-model, or neither", param_hint="--judge-url"
        )
    try:
        quads = load_parallel_jsonl(heldout)
        judge = (
            OpenAIJudge(judge_url, judge_model, api_key=os.environ.get(judge_key_env))
            if judge_url and judge_model
            else None
        )
        model, tokenizer = _load(model_dir, adapter, device, dtype)
        baseline = None
        if baseline_adapter is not None:
            base_model, _ = _load(model_dir, baseline_adapter, device, dtype)
            baseline = Baseline(name=f"adapter {baseline_adapter.name}", model=base_model)
        report = evaluate(
            model,
            tokenizer,
            quads,
            target,
            config,
            baseline=baseline,
            judge=judge,
            model_name=f"{model_dir}" + (f" + {adapter}" if adapter else ""),
            base=BaseSide(
                identity=BaseModelId(name=str(model_dir), source=str(model_dir)),
                cache=FileBaseCache(base_cache) if base_cache is not None else None,
            ),
        )
    except CloError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    tmp.write_text(
        json.dumps(report.model_dump(mode="json"), ensure_ascii=False, indent=2), encoding="utf-8"
    )
    os.replace(tmp, out)

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Evaluation: {report.model} -> {report.target_language_name} "
        f"({report.heldout_size} held-out examples)"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for metric, value in _summary_rows(report):
        table.add_row(metric, value)
    console = Console()
    console.print(table)
    rows = versus_base_rows(report)
    if rows and report.versus_base is not None:
        vb = report.versus_base
        source = "cache" if vb.base.cached else f"{vb.base.generated_answers} answers generated"
        versus = Table(
            title=f"Base ({vb.base.model}, {source}) | trained | Δ on the same prompts: "
            f"{', '.join(report.prompt_sources)}",
            caption="[brackets] 95% intervals (Wilson; Δ: paired bootstrap); p: exact McNemar; "
            "* Δ distinguishable from zero",
        )
        for column in ("metric", "base", "trained", "Δ", "p"):
            versus.add_column(column, justify="left" if column == "metric" else "right")
        for row in rows:
            versus.add_row(*row)
        # five columns with intervals need more than 80 characters; a narrower terminal wraps
        Console(width=max(console.width, 132)).print(versus)
        usable = vb.metrics.get("usable_rate_target")
        if usable is not None and usable.verdict:
            typer.echo(f"usable target-language answers: {usable.verdict}")
    typer.echo(f"report written to {out}")
