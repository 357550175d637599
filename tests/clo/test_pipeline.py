"""clo.pipeline on tiny models: stages chain, skip finished work, stop and resume; `clo run`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeGuard

import pytest
from typer.testing import CliRunner

from clo.errors import CloError, Stopped
from clo.events import CheckpointSaved, Event, StageStarted, StepDone
from clo.pipeline import PipelineHooks, RunInputs, run_pipeline, stage_translate
from clo.resolve import LocalCatalog, ResolvedJob, resolve_job
from clo.spec import JobSpec


def _spec(**hp: object) -> JobSpec:
    return JobSpec.model_validate(
        {
            "base_model": "tiny",
            "target_language": "de",
            "data_size": 12,
            "trainable": "lora",
            "seed_data": {"source": "parallel"},
            "hyperparameters": {
                "max_steps": 4,
                "batch_size": 2,
                "learning_rate": 1e-3,
                "max_length": 96,
                "checkpoint_every": 2,
                **hp,
            },
            "evaluation": {"heldout_size": 2, "max_new_tokens": 4, "prompt_set_limit": 4},
        }
    )


def _training_step(event: Event) -> TypeGuard[StepDone]:
    return isinstance(event, StepDone) and event.stage == "training" and "loss" in event.metrics


def _resolved(spec: JobSpec, model: Path | str = "x") -> ResolvedJob:
    return resolve_job(spec.model_copy(update={"base_model": str(model)}), LocalCatalog())


def test_stop_checkpoints_and_a_rerun_resumes(tiny_qwen2: Path, tmp_path: Path):
    resolved = _resolved(_spec(), tiny_qwen2)
    steps: list[int] = []

    checkpoints: list[int] = []

    def progress(event: Event) -> None:
        if isinstance(event, CheckpointSaved):
            checkpoints.append(event.step)
        if _training_step(event):
            steps.append(event.step)

    with pytest.raises(Stopped):
        run_pipeline(resolved, tmp_path, PipelineHooks(progress, lambda: len(steps) >= 3))
    assert steps == [1, 2, 3]
    assert checkpoints == [2]  # reported by the trainer itself, every checkpoint_every steps
    assert (tmp_path / "train" / "checkpoints").is_dir()
    assert not (tmp_path / "package").exists()

    events: list[Event] = []
    steps.clear()
    result = run_pipeline(resolved, tmp_path, PipelineHooks(events.append))
    resumed = [e for e in events if isinstance(e, StageStarted)]
    # Translation output reused; training restarted from the step-3 checkpoint, not step 0.
    assert [(e.stage, e.resumed) for e in resumed] == [
        ("translating", True),
        ("training", False),
        ("evaluating", False),
        ("packaging", False),
    ]
    assert [e.step for e in events if _training_step(e)] == [4]
    bundle = result.bundle_dir
    assert (bundle / "adapter_config.json").is_file() and (bundle / "evaluation.json").is_file()
    sums = (bundle / "SHA256SUMS").read_text().splitlines()
    assert {line.split("  ")[1] for line in sums} == {
        p.name for p in bundle.iterdir() if p.name != "SHA256SUMS"
    }
    job = json.loads((bundle / "clo_job.json").read_text())
    assert job["spec"]["data_size"] == 12 and result.train_summary["train_steps"] == 4

    # Everything done: a third run redoes nothing and returns the same bundle.
    events.clear()
    again = run_pipeline(resolved, tmp_path, PipelineHooks(events.append))
    assert again.bundle_dir == bundle
    assert all(e.resumed for e in events if isinstance(e, StageStarted))


def test_data_size_beyond_parallel_data_names_the_field(tmp_path: Path):
    spec = _spec().model_copy(update={"data_size": 100_000})
    with pytest.raises(CloError) as refused:
        _resolved(spec)
    assert refused.value.param == "data_size" and "100000" in str(refused.value)
    assert refused.value.code == "data_size_too_large"
    # A job resolved when more data shipped fails the same way when it runs.
    job = _resolved(_spec()).model_copy(update={"spec": spec})
    with pytest.raises(CloError) as err:
        stage_translate(job, tmp_path, PipelineHooks(), RunInputs())
    assert err.value.param == "data_size" and "100000" in str(err.value)


def test_clo_run_cli_writes_a_bundle(tiny_qwen2: Path, tmp_path: Path):
    from clo.cli import app

    result = CliRunner().invoke(
        app,
        [
            "run",
            "--base-model",
            str(tiny_qwen2),
            "--lang",
            "de",
            "--data-size",
            "10",
            "--seed-source",
            "parallel",
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--heldout-size",
            "2",
            "--prompt-set-limit",
            "4",
            "--workdir",
            str(tmp_path / "w"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "adapter bundle:" in result.output
    assert (tmp_path / "w" / "package" / "bundle" / "adapter_model.safetensors").is_file()


def test_clo_run_cli_rejects_bad_spec_naming_the_field(tmp_path: Path):
    from clo.cli import app

    result = CliRunner().invoke(
        app,
        [
            "run",
            "--base-model",
            "x",
            "--lang",
            "de",
            "--data-size",
            "3",
            "--workdir",
            str(tmp_path),
        ],
    )
    assert result.exit_code != 0 and "data_size" in result.output


@pytest.mark.parametrize("method", ["sft", "sft+dpo"])
def test_baseline_methods_run_the_whole_pipeline(tiny_qwen2: Path, tmp_path: Path, method: str):
    # SFT steps log no preference terms (they forward only the trained responses), so an SFT
    # job's preference figures must come from the held-out evaluation.
    job = _resolved(JobSpec.model_validate({**_spec().model_dump(), "method": method}), tiny_qwen2)
    events: list[Event] = []
    result = run_pipeline(job, tmp_path, PipelineHooks(events.append))
    steps = [e for e in events if _training_step(e)]
    assert [e.step for e in steps] == [1, 2, 3, 4]
    sft_steps = [e for e in steps if e.labels["phase"] == "sft"]
    assert sft_steps and all("cl_loss" not in e.metrics for e in sft_steps)
    assert all("cl_loss" in e.metrics for e in steps if e.labels["phase"] == "dpo")
    report = json.loads((result.bundle_dir / "evaluation.json").read_text())
    directions = report["preference"]["directions"]
    assert set(directions) == {"en", "tgt"} and 0.0 <= directions["tgt"]["accuracy"] <= 1.0
