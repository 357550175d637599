"""Selective gradient checkpointing: a run over its budget recomputes as few decoder layers
as bring the estimate under it (transformers' every_n_layers), and the update is the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.activation_policy import (
    MB,
    MicroBatchShape,
    checkpointed_count,
    choose_checkpointing,
    estimate,
    selective_supported,
)
from clo.config import TrainConfig
from clo.seed import builtin_parallel
from clo.tiny import build_tiny_causal_lm
from clo.trainer import train
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

LAYERS = 6
KW: dict = dict(precision="fp32", optimizer="adamw", chunk_tokens=256)


@pytest.fixture(scope="module")
def six_layers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(
        tmp_path_factory.mktemp("six_layers"), arch="qwen2", num_layers=LAYERS
    )


def test_estimates_fall_as_more_layers_are_checkpointed(six_layers: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(six_layers)
    assert selective_supported(model)
    shape = MicroBatchShape(4, 512, 800)
    off = estimate(model, shape, checkpointing=False, **KW).total
    every_layer = estimate(model, shape, checkpointing=True, **KW).total
    by_count = {
        checkpointed_count(LAYERS, every): estimate(
            model, shape, checkpointing=True, every_n_layers=every, **KW
        ).total
        for every in (6, 3, 2, 1)  # 1, 2, 3 and 6 layers
    }
    assert by_count[6] == every_layer
    assert off > by_count[1] > by_count[2] > by_count[3] > by_count[6]


def test_a_budget_between_the_estimates_checkpoints_the_fewest_layers_that_fit(
    six_layers: Path,
) -> None:
    model = AutoModelForCausalLM.from_pretrained(six_layers)
    shape = MicroBatchShape(4, 512, 800)

    def at(every: int) -> int:
        return estimate(model, shape, checkpointing=True, every_n_layers=every, **KW).total

    # between two layers (every 3, 4 or 5) and one (every 6): two layers are the fewest
    budget_mb = (at(5) + at(6)) // 2 // MB
    choice = choose_checkpointing(model, shape, requested=False, budget_mb=budget_mb, **KW)
    assert (choice.reason, choice.checkpointed_layers, choice.layers) == ("over_budget", 2, 6)
    assert choice.checkpoint_every is not None and choice.checkpoint_every >= 3
    assert choice.estimate_chosen_bytes <= budget_mb * MB < at(6)
    assert choice.estimate_chosen_bytes < choice.estimate_off_bytes
    summary = choice.as_dict()
    assert summary["checkpointed_layers"] == 2 and summary["estimate_chosen_mb"] > 0
    # asked for by the job: every layer, whatever the budget
    asked = choose_checkpointing(model, shape, requested=True, budget_mb=None, **KW)
    assert (asked.checkpoint_every, asked.checkpointed_layers) == (1, LAYERS)


def test_a_run_just_over_its_budget_recomputes_some_layers_for_the_same_update(
    six_layers: Path, tmp_path: Path
) -> None:
    quads = builtin_parallel("de")[:4]
    tok = AutoTokenizer.from_pretrained(six_layers)

    def run(budget_mb: float | None):  # type: ignore[no-untyped-def]
        model = AutoModelForCausalLM.from_pretrained(six_layers)
        config = TrainConfig(
            max_steps=1,
            batch_size=2,
            max_length=96,
            max_prompt_length=48,
            pack_prompts=False,  # packed rows would first go one at a time to fit
            memory_budget_mb=None if budget_mb is None else int(budget_mb),
        )
        return train(model, tok, quads, config, tmp_path / str(budget_mb))

    roomy = run(None)
    plan = roomy.runtime["activation_memory"]
    assert (plan["gradient_checkpointing"], plan["checkpointed_layers"]) == (False, 0)
    # a whole MB under the estimate without checkpointing, far above the one with all layers
    assert plan["estimate_off_mb"] - plan["estimate_on_mb"] > 2
    tight = run(plan["estimate_off_mb"] - 1)
    chosen = tight.runtime["activation_memory"]
    assert chosen["reason"] == "over_budget"
    assert 0 < chosen["checkpointed_layers"] < LAYERS
    flags = [layer.gradient_checkpointing for layer in tight.model.model.layers]
    assert sum(flags) == chosen["checkpointed_layers"] and flags[0]
    want = dict(roomy.model.named_parameters())
    for name, p in tight.model.named_parameters():
        torch.testing.assert_close(p, want[name], rtol=1e-5, atol=1e-6, msg=name)
