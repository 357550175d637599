"""`clo export lora` (a plain LoRA any LoRA server loads, from any CLO result) and `clo export
merged` (an adapter merged into its base), both from folders already on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from clo.cli.app import app

export_app = typer.Typer(
    help="Re-export a trained result in another format (a plain LoRA for vLLM/TGI/llama.cpp).",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")

# CloError.param of clo.lora_extract -> the option a user typed
_OPTIONS = {
    "path": "SOURCE",
    "rank": "--rank",
    "energy": "--energy",
    "alpha": "--alpha",
    "base": "--base",
    "dtype": "--dtype",
    "limit": "--limit",
}


_DTYPE_HELP = (
    "trained | bf16 | fp16 | fp32 (or float32, bfloat16, float16). trained: the dtype the "
    "export holds the trained weights in (clo_metadata.json export_dtype), no cast; the card "
    "says which."
)


@export_app.command("lora")
def lora_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="An adapter export (attention-only or LoRA), a full-model export, a job "
            "bundle or a `clo run` / `clo train` output folder."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (replaced).")],
    rank: Annotated[
        int | None,
        typer.Option(help="LoRA rank (with --energy: the most it may use)."),
    ] = 16,
    energy: Annotated[
        float | None,
        typer.Option(help="Smallest rank keeping this share of every projection's energy."),
    ] = None,
    alpha: Annotated[int | None, typer.Option(help="lora_alpha (default: the rank).")] = None,
    base: Annotated[
        str | None, typer.Option(help="Base model folder or hub id (default: from the export).")
    ] = None,
    base_revision: Annotated[str | None, typer.Option(help="Base model revision.")] = None,
    heldout: Annotated[
        Path | None,
        typer.Option(help="Held-out quadruples JSONL scored against the exact adapter."),
    ] = None,
    text: Annotated[
        list[str] | None, typer.Option(help="A text scored instead of quadruples (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Held-out examples scored at most.")] = 64,
    lora_bias: Annotated[
        bool,
        typer.Option(help="Keep bias changes as PEFT lora_bias (exact; not every server)."),
    ] = False,
    dtype: Annotated[str, typer.Option(help=_DTYPE_HELP)] = "trained",
    device: Annotated[str | None, typer.Option(help="cpu, cuda ... (default: best).")] = None,
) -> None:
    """Extract a LoRA by truncated SVD of the weight change; report its error."""
    from clo.errors import CloError
    from clo.lora_extract import ExtractOptions, extract_lora

    opts = ExtractOptions(
        rank=rank,
        energy=energy,
        alpha=alpha,
        lora_bias=lora_bias,
        dtype=dtype,
        heldout=heldout,
        texts=tuple(text or ()),
        limit=limit,
        device=device,
    )
    try:
        report = extract_lora(source, out, opts, base=base, base_revision=base_revision)
    except CloError as exc:
        raise typer.BadParameter(str(exc), param_hint=_OPTIONS.get(exc.param or "")) from exc
    logprob = report["logprob"] or {}
    typer.echo(
        json.dumps(
            {
                "output": str(out),
                "rank": report["rank"],
                "target_modules": report["target_modules"],
                "relative_error": report["overall"]["relative_error"],
                "mean_abs_delta_logp": logprob.get("mean_abs_delta"),
                "not_represented": len(report["not_represented"]),
            },
            indent=2,
        )
    )


@export_app.command("merged")
def merged_command(
    source: Annotated[
        Path, typer.Argument(help="An adapter export, a job bundle or a run folder.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (replaced).")],
    base: Annotated[
        str | None, typer.Option(help="Base model folder or hub id (default: from the export).")
    ] = None,
    base_revision: Annotated[str | None, typer.Option(help="Base model revision.")] = None,
    dtype: Annotated[str, typer.Option(help=_DTYPE_HELP)] = "trained",
    device: Annotated[str | None, typer.Option(help="cpu, cuda ... (default: best).")] = None,
) -> None:
    """Merge the adapter into its base and write the full model (any server loads it)."""
    from clo.errors import CloError
    from clo.export import merge_export

    try:
        sums = merge_export(
            source, out, base=base, base_revision=base_revision, device=device, dtype=dtype
        )
    except CloError as exc:
        raise typer.BadParameter(str(exc), param_hint=_OPTIONS.get(exc.param or "")) from exc
    typer.echo(json.dumps({"output": str(out), "files": sorted(sums)}, indent=2))
