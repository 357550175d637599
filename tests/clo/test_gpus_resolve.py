"""clo.resolve on `gpus` and the optimizer: every refusal names its field; and the 8-bit
optimizer on a machine without CUDA fails before any training step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from clo.config import TrainConfig
from clo.errors import CloError
from clo.optimizers import make_optimizer
from clo.resolve import LocalCatalog, resolve_job
from clo.spec import JobSpec


def _resolve(max_gpus: int = 8, **fields: Any) -> Any:
    spec = JobSpec.model_validate(
        {
            "base_model": "lm",
            "target_language": "de",
            "data_size": 32,
            "seed_data": {"source": "parallel"},
            **fields,
        }
    )
    return resolve_job(spec, LocalCatalog(max_gpus=max_gpus))


def _refusal(**fields: Any) -> tuple[str, str | None]:
    with pytest.raises(CloError) as caught:
        _resolve(**fields)
    return caught.value.code, caught.value.param


def test_gpus_within_the_workers_count_resolve_and_are_stored() -> None:
    resolved = _resolve(max_gpus=4, gpus=4, hyperparameters={"batch_size": 8})
    assert resolved.spec.gpus == 4
    assert resolved.train.batch_size == 8  # the global micro-batch, split by the pipeline


def test_more_gpus_than_a_worker_owns_is_refused() -> None:
    assert _refusal(max_gpus=2, gpus=4, hyperparameters={"batch_size": 4}) == (
        "too_many_gpus",
        "gpus",
    )


def test_a_batch_that_does_not_split_over_the_gpus_is_refused() -> None:
    assert _refusal(gpus=3, hyperparameters={"batch_size": 4}) == (
        "batch_size_not_divisible",
        "gpus",
    )


def test_8bit_optimizer_under_fsdp2_is_refused_but_fine_on_one_gpu() -> None:
    hp = {"batch_size": 4, "optimizer": "adamw_8bit"}
    assert _refusal(gpus=2, trainable="full", hyperparameters=hp) == (
        "optimizer_unavailable",
        "hyperparameters.optimizer",
    )
    assert _resolve(gpus=1, trainable="full", hyperparameters=hp).train.optimizer == "adamw_8bit"
    assert _resolve(gpus=2, trainable="lora", hyperparameters=hp).train.optimizer == "adamw_8bit"


def test_gradient_checkpointing_is_a_hyperparameter() -> None:
    resolved = _resolve(hyperparameters={"gradient_checkpointing": True})
    assert resolved.train.gradient_checkpointing is True
    assert _resolve().train.gradient_checkpointing is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_8bit_optimizer_without_cuda_is_a_user_error_naming_the_field() -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(CloError) as caught:
        make_optimizer(params, TrainConfig(optimizer="adamw_8bit"))
    assert (caught.value.code, caught.value.param) == (
        "optimizer_unavailable",
        "hyperparameters.optimizer",
    )
    assert "CUDA" in str(caught.value)
    adamw = make_optimizer(params, TrainConfig())
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults["fused"] is True  # plain CPU tensors: torch's fused kernel


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_a_run_asking_for_8bit_adamw_fails_before_its_first_step(
    tiny_qwen2: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clo.pairs import Quadruple
    from clo.trainer import train

    quads = [Quadruple(f"q{i}", f"a{i}", f"f{i}", f"b{i}") for i in range(4)]
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    cfg = TrainConfig(optimizer="adamw_8bit", max_steps=1, batch_size=2, trainable="full")
    with pytest.raises(CloError) as caught:
        train(model, tok, quads, cfg, tmp_path / "work")
    assert caught.value.code == "optimizer_unavailable"
    assert not (tmp_path / "work" / "checkpoints").exists()
