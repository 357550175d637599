"""What a job reports about how it trained: precision, packing, the checkpointing choice."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.activation_policy import MicroBatchShape, choose_checkpointing, estimate
from clo.atomic_dir import read_json
from clo.config import TrainConfig
from clo.pipeline import PipelineHooks, RunInputs, stage_train, stage_translate
from clo.precision import cpu_has_fast_bf16
from clo.resolve import LocalCatalog, resolve_job
from clo.seed import builtin_parallel
from clo.spec import JobSpec
from clo.trainer import train
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

QUADS = builtin_parallel("de")[:4]


def test_job_summary_and_card_say_how_it_trained(tiny_qwen2: Path, tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {
            "base_model": str(tiny_qwen2),
            "target_language": "de",
            "data_size": 8,
            "trainable": "attention",
            "seed_data": {"source": "parallel"},
            "hyperparameters": {"max_steps": 1, "batch_size": 2, "max_length": 96},
            "evaluation": {"enabled": False},
        }
    )
    resolved = resolve_job(spec, LocalCatalog())
    assert resolved.train.precision == "auto"  # a job's default: what the worker is fast at
    hooks, inputs = PipelineHooks(), RunInputs()
    quads, _ = stage_translate(resolved, tmp_path, hooks, inputs)
    exported, summary = stage_train(resolved, tmp_path, hooks, inputs, quads)
    expected = "bf16" if cpu_has_fast_bf16() else "fp32"
    assert summary["precision"] == expected
    assert summary["packed_prompts"] is True
    assert summary["activation_memory"]["gradient_checkpointing"] is False
    assert summary["activation_memory"]["reason"] == "fits"
    # the tiny model's rows are short: a CPU worker forwards the whole micro-batch at once
    assert summary["activation_memory"]["rows_per_forward"] is None
    assert summary["activation_memory"]["rows_reason"] == "fits"
    assert read_json(tmp_path / "train" / "summary.json")["precision"] == expected
    card = (exported / "README.md").read_text(encoding="utf-8")
    assert f"- trained in `{expected}`" in card


def test_a_budget_too_small_turns_checkpointing_on_and_the_run_fits(
    tiny_qwen2: Path, tmp_path: Path
) -> None:
    runs = {}
    for budget in (None, 1):  # the device's free memory; 1 MB
        model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
        tok = AutoTokenizer.from_pretrained(tiny_qwen2)
        config = TrainConfig(
            max_steps=1, batch_size=2, max_length=96, max_prompt_length=48, memory_budget_mb=budget
        )
        runs[budget] = train(model, tok, QUADS, config, tmp_path / str(budget))
    roomy, tight = (runs[b].runtime["activation_memory"] for b in (None, 1))
    assert (roomy["gradient_checkpointing"], roomy["reason"]) == (False, "fits")
    assert tight["gradient_checkpointing"] is True
    assert tight["reason"] == "over_budget_even_checkpointed"  # 1 MB: not even the weights
    assert (tight["rows_per_forward"], tight["rows_reason"]) == (1, "over_budget")
    layers = runs[1].model.model.layers
    assert all(layer.gradient_checkpointing for layer in layers)
    # the same update either way (checkpointing only recomputes)
    want = dict(runs[None].model.named_parameters())
    for name, p in runs[1].model.named_parameters():
        torch.testing.assert_close(p, want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_estimate_grows_with_tokens_and_checkpointing_saves_activations(tiny_qwen2: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    kw: dict = dict(precision="fp32", optimizer="adamw", chunk_tokens=256)
    small, large = MicroBatchShape(4, 64, 100), MicroBatchShape(4, 512, 800)
    off = estimate(model, large, checkpointing=False, **kw)
    on = estimate(model, large, checkpointing=True, **kw)
    assert estimate(model, small, checkpointing=False, **kw).total < off.total
    assert on.activations < off.activations and on.weights == off.weights
    # a budget between the two estimates: checkpointing is what makes it fit
    between = (on.total + off.total) // 2 // 2**20
    choice = choose_checkpointing(model, large, requested=False, budget_mb=between, **kw)
    assert (choice.gradient_checkpointing, choice.reason) == (True, "over_budget")
    requested = choose_checkpointing(model, small, requested=True, budget_mb=None, **kw)
    assert (requested.gradient_checkpointing, requested.reason) == (True, "requested")
