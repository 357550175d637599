"""A whole pipeline job whose training stage runs over 2 gloo processes (torchrun, CPU).

The same job (global micro-batch 2, fp32, unpacked rows) run in one process and with
gpus=2: lora (DDP) packages the same adapter, full (FSDP2, the weights gathered from the
shards) the same model, within the equivalence tests' tolerance (tests/clo/test_distributed.py:
float32, atol 2e-5, rtol 1e-4). The 2-process run is stopped mid-way through the stage's
hook and run again, so the same comparison covers the stop file, the forwarded progress and
checkpoint events, and the resume from the ranks' checkpoint (DDP's and DCP's); evaluation
and packaging then run in this process from the stage's output.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clo.errors import Stopped
from clo.events import CheckpointSaved, Event, StepDone
from clo.pipeline import PipelineHooks, run_pipeline
from clo.resolve import LocalCatalog, resolve_job
from clo.spec import JobSpec

RTOL, ATOL = 1e-4, 2e-5  # the equivalence tests' tolerance


def _resolved(model: Path, gpus: int, trainable: str):  # type: ignore[no-untyped-def]
    spec = JobSpec.model_validate(
        {
            "base_model": str(model),
            "target_language": "de",
            "data_size": 12,
            "trainable": trainable,
            "gpus": gpus,
            "seed_data": {"source": "parallel"},
            "hyperparameters": {
                "max_steps": 4,
                "batch_size": 2,  # global: 1 example a rank with gpus=2
                "learning_rate": 1e-2,
                "max_length": 96,
                "checkpoint_every": 2,
                # the float32 tolerance (jobs default to auto: bf16 on this CPU), and the rows
                # the ranks forward (packed prompts are one process only)
                "precision": "fp32",
                "pack_prompts": False,
            },
            "evaluation": {
                "heldout_size": 2,
                "max_new_tokens": 4,
                "prompt_set_limit": 0,
                "benchmarks": [],
            },
        }
    )
    return resolve_job(spec, LocalCatalog(max_gpus=2))


def _training_steps(events: list[Event]) -> list[int]:
    return [
        e.step
        for e in events
        if isinstance(e, StepDone) and e.stage == "training" and "loss" in e.metrics
    ]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("trainable", ["lora", "full"])
def test_two_process_training_stage_gives_the_one_process_adapter(
    tiny_qwen2: Path, tmp_path: Path, trainable: str
) -> None:
    """lora: DDP, the adapter; full: FSDP2, the whole model gathered from the shards."""
    one = run_pipeline(_resolved(tiny_qwen2, 1, trainable), tmp_path / "one")

    resolved = _resolved(tiny_qwen2, 2, trainable)
    work = tmp_path / "two"
    first: list[Event] = []
    with pytest.raises(Stopped):
        run_pipeline(
            resolved, work, PipelineHooks(first.append, lambda: len(_training_steps(first)) >= 2)
        )
    assert [e.step for e in first if isinstance(e, CheckpointSaved)] == [2]
    assert not (work / "package").exists()
    second: list[Event] = []
    two = run_pipeline(resolved, work, PipelineHooks(second.append))
    # each step ran once: the second run resumed from the ranks' stop checkpoint
    assert _training_steps(first) + _training_steps(second) == [1, 2, 3, 4]

    assert two.train_summary["world_size"] == 2 and "world_size" not in one.train_summary
    assert two.train_summary["train_examples"] == one.train_summary["train_examples"] == 10
    assert two.evaluation is not None and (two.bundle_dir / "evaluation.json").is_file()
    assert not (work / "train" / "ranks").exists()  # the stage's scratch is gone

    weights = "adapter_model.safetensors" if trainable == "lora" else "model.safetensors"
    assert two.bundle_kind == one.bundle_kind
    ours = load_file(str(two.bundle_dir / weights))
    theirs = load_file(str(one.bundle_dir / weights))
    assert ours.keys() == theirs.keys() and ours
    for name, tensor in theirs.items():
        torch.testing.assert_close(ours[name], tensor, rtol=RTOL, atol=ATOL, msg=name)
    if trainable == "lora":
        trained = max(t.abs().max().item() for n, t in theirs.items() if "lora_B" in n)
        assert trained > 1e-3  # lora_B starts at zero: the steps moved it
    else:
        base = load_file(str(tiny_qwen2 / "model.safetensors"))
        moved = max((theirs[n] - t).abs().max().item() for n, t in base.items() if n in theirs)
        assert moved > 1e-3  # the steps moved the weights
