"""`clo tiny`: build tiny local models for tests and the offline demo."""

from pathlib import Path

import typer

from clo.cli.app import app


@app.command("tiny-lm")
def tiny_lm(
    out_dir: Path = typer.Argument(..., help="Directory to write the model and tokenizer to."),
    arch: str = typer.Option("qwen2", help="Architecture: qwen2 (has a chat template) or llama."),
    hidden_size: int = typer.Option(64, help="Hidden size."),
    layers: int = typer.Option(2, help="Number of decoder layers."),
    seed: int = typer.Option(0, help="Seed for the random weights."),
) -> None:
    """Build a tiny random-weight causal LM with a locally trained tokenizer."""
    from clo.tiny import build_tiny_causal_lm

    if arch not in ("qwen2", "llama"):
        raise typer.BadParameter("use qwen2 or llama", param_hint="--arch")
    path = build_tiny_causal_lm(out_dir, arch=arch, hidden_size=hidden_size, num_layers=layers,
                                seed=seed)  # type: ignore[arg-type]
    typer.echo(f"tiny {arch} model written to {path}")
