"""`clo tiny-lm`: build tiny local causal LMs for tests and the offline demo."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from clo.cli.app import app


class TinyArch(StrEnum):
    qwen2 = "qwen2"
    llama = "llama"


@app.command("tiny-lm")
def tiny_lm(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the model and tokenizer to.")],
    arch: Annotated[
        TinyArch, typer.Option(help="qwen2 (ships a chat template) or llama (a base model).")
    ] = TinyArch.qwen2,
    hidden_size: Annotated[int, typer.Option(help="Hidden size.")] = 64,
    layers: Annotated[int, typer.Option(help="Number of decoder layers.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed for the random weights.")] = 0,
) -> None:
    """Build a tiny random-weight causal LM with a locally trained tokenizer."""
    from clo.tiny import build_tiny_causal_lm

    path = build_tiny_causal_lm(
        out_dir, arch=arch.value, hidden_size=hidden_size, num_layers=layers, seed=seed
    )
    typer.echo(f"tiny {arch.value} model written to {path}")
