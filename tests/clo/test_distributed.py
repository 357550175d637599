"""Training over 2 ranks (gloo, CPU) equals one process with the same global batch.

Each test starts its ranks with clo.distributed_launch.run_ranks (forked processes, a file
store for the rendezvous, all ended when the call returns) and compares with the
one-process trainer in this process. Tolerance: float32, atol 2e-5 and rtol 1e-4 on every
parameter after 3-4 steps at lr 1e-2 (observed differences are at most ~7e-6: the ranks
pad their shares of a micro-batch to other lengths than one process pads the whole).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.config import TrainConfig
from clo.distributed import Ranks
from clo.distributed_launch import run_ranks
from clo.distributed_model import full_state_dict, optimizer_state_bytes
from clo.distributed_train import SHARDED_CHECKPOINTS, make_run, run_distributed
from clo.encoding import encode_quads
from clo.errors import Stopped
from clo.pairs import Quadruple
from clo.reference import reference_logps
from clo.trainer import TrainingRun, run_training, train
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

# answers of different lengths, so the ranks' shares pad differently and the step totals
# (tokens of the whole global step) matter
QUADS = [
    Quadruple(
        f"Question {i}: what is {i} plus {i}?",
        f"It is {2 * i}." + " A small number." * (i % 3),
        f"Frage {i}: Was ist {i} plus {i}?",
        f"Es ist {2 * i}." + " Eine kleine Zahl." * (2 - i % 3),
    )
    for i in range(8)
]
RANKS = 2
TOLERANCE = dict(rtol=1e-4, atol=2e-5)


def config(trainable: str, batch_size: int, grad_accum: int, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(
        trainable=trainable,
        max_steps=3,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=64,
        max_prompt_length=32,
        learning_rate=1e-2,
        warmup_ratio=0.25,
        checkpoint_every=100,
    )
    return TrainConfig(**{**base, **kw})


def load(path: Path) -> tuple[Any, Any]:
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def rank_target(
    ranks: Ranks,
    model_dir: Path,
    cfg: TrainConfig,
    out: Path,
    stop_after: int | None = None,
    reference_cache: Path | None = None,
) -> None:
    """One rank's training; rank 0 saves the weights, every rank its optimizer bytes."""
    model, tok = load(model_dir)
    run = make_run(model, tok, QUADS, cfg, out / "work", reference_cache)
    calls = iter(range(10**6))
    history: list[dict[str, Any]] = []
    try:
        result = run_distributed(
            run,
            lambda m: "loss" in m and history.append(m),
            lambda: stop_after is not None and next(calls) == stop_after,
        )
    except Stopped:
        (out / f"stopped-{ranks.rank}").touch()
        return
    weights = (
        full_state_dict(run.model) if run.sharded else {n: p.detach() for n, p in run.named_params}
    )
    info = {
        "optimizer_bytes": optimizer_state_bytes(run.optimizer),
        "steps": [m["step"] for m in history],
        "history": history,
    }
    (out / f"rank-{ranks.rank}.json").write_text(json.dumps(info))
    if ranks.is_main:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(out / "weights.safetensors"))
        (out / "metrics.json").write_text(json.dumps(result.metrics))


def one_process(
    model_dir: Path, cfg: TrainConfig, workdir: Path
) -> tuple[dict[str, Any], TrainingRun]:
    model, tok = load(model_dir)
    run = TrainingRun(model, tok, QUADS, cfg, workdir, None)
    result = run_training(run, None, None)
    return {**result.metrics, "history": result.history}, run


def assert_same_weights(got: dict[str, torch.Tensor], run: TrainingRun) -> None:
    want = {n: p.detach() for n, p in run.model.named_parameters()}
    assert got and set(got) <= set(want)
    if run.config.trainable != "full":
        assert set(got) == {n for n, _ in run.named_params}
    for name, tensor in got.items():
        torch.testing.assert_close(tensor, want[name], **TOLERANCE, msg=name)


@pytest.mark.parametrize(
    ("trainable", "batch_size", "grad_accum"),
    [("attention", 2, 1), ("lora", 1, 2), ("full", 2, 2)],
)
def test_two_ranks_train_what_one_process_trains(
    tiny_qwen2: Path, tmp_path: Path, trainable: str, batch_size: int, grad_accum: int
) -> None:
    dist_cfg = config(trainable, batch_size, grad_accum)
    single_metrics, single = one_process(
        tiny_qwen2, config(trainable, batch_size * RANKS, grad_accum), tmp_path / "one"
    )
    cache = tmp_path / "reference"
    run_ranks(rank_target, RANKS, (tiny_qwen2, dist_cfg, tmp_path, None, cache), timeout_s=240)
    assert_same_weights(load_file(str(tmp_path / "weights.safetensors")), single)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["world_size"] == RANKS and metrics["train_steps"] == 3
    # grad_norm: AdamW would hide gradients off by a constant factor, the norm does not
    for key in ("loss", "nll", "cl_loss", "margin_en", "accuracy_tgt", "grad_norm"):
        assert metrics[key] == pytest.approx(single_metrics[key], rel=1e-4, abs=1e-5), key
    # the reference pass: each rank scored half, gathered into one cache file by rank 0
    (cached,) = cache.iterdir()
    model, tok = load(tiny_qwen2)
    encoded, _ = encode_quads(tok, QUADS, 64, 32)
    whole = reference_logps(model, tok, encoded, tok.pad_token_id, batch_size=4)
    torch.testing.assert_close(load_file(str(cached))["logps"], whole, rtol=1e-5, atol=1e-5)

    per_rank = [
        json.loads((tmp_path / f"rank-{r}.json").read_text())["optimizer_bytes"]
        for r in range(RANKS)
    ]
    whole_bytes = optimizer_state_bytes(single.optimizer)
    if trainable == "full":
        # AdamW's moments are sharded; each parameter's step counter (a 4-byte scalar) is not
        counters = 4 * len(single.named_params)
        assert per_rank == [(whole_bytes - counters) // RANKS + counters] * RANKS
        assert per_rank[0] < 0.51 * whole_bytes
    else:
        assert per_rank == [whole_bytes] * RANKS  # DDP: every rank holds all of it


def stop_then_resume(tiny_qwen2: Path, tmp_path: Path, cfg: TrainConfig) -> Path:
    """A 2-rank run stopped after 2 of 4 steps; returns a copy of its workdir as stopped."""
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    run_ranks(rank_target, RANKS, (tiny_qwen2, cfg, stopped, 2), timeout_s=240)
    assert {p.name for p in stopped.glob("stopped-*")} == {"stopped-0", "stopped-1"}
    copy = tmp_path / "as-stopped"
    shutil.copytree(stopped, copy)
    run_ranks(rank_target, RANKS, (tiny_qwen2, cfg, stopped), timeout_s=240)
    assert json.loads((stopped / "rank-0.json").read_text())["steps"] == [3, 4]  # continued
    return copy


@pytest.mark.parametrize("trainable", ["attention", "full"])
def test_stop_and_resume_mid_run_gives_the_same_result(
    tiny_qwen2: Path, tmp_path: Path, trainable: str
) -> None:
    cfg = config(trainable, 2, 1, max_steps=4)
    one = config(trainable, 2 * RANKS, 1, max_steps=4)  # the same global batch
    _, single = one_process(tiny_qwen2, one, tmp_path / "one")
    as_stopped = stop_then_resume(tiny_qwen2, tmp_path, cfg)
    assert_same_weights(load_file(str(tmp_path / "stopped" / "weights.safetensors")), single)

    # the same checkpoint on another number of ranks, with the same global batch
    if trainable == "full":
        # DCP reshards the 2-rank checkpoint onto 1 rank
        assert len(list((as_stopped / "work" / SHARDED_CHECKPOINTS).glob("step-*/.metadata"))) == 1
        run_ranks(rank_target, 1, (tiny_qwen2, one, as_stopped), timeout_s=240)
        assert json.loads((as_stopped / "rank-0.json").read_text())["steps"] == [3, 4]
        assert_same_weights(load_file(str(as_stopped / "weights.safetensors")), single)
    else:
        # DDP's checkpoint is rank 0's, in the one-process format: one process resumes it
        (checkpoint,) = (as_stopped / "work" / "checkpoints").glob("step-*")
        assert (checkpoint / "trainable.safetensors").exists()
        model, tok = load(tiny_qwen2)
        steps: list[int] = []
        resumed = train(
            model,
            tok,
            QUADS,
            one,
            as_stopped / "work",
            progress=lambda m: "loss" in m and steps.append(m["step"]),
        )
        assert steps == [3, 4]
        assert_same_weights(
            {n: p.detach() for n, p in resumed.model.named_parameters() if p.requires_grad}, single
        )


def test_sft_plus_dpo_switches_phase_on_every_rank_alike(tiny_qwen2: Path, tmp_path: Path) -> None:
    """Full (FSDP2): the DPO phase's fresh optimizer over the shards and its reference,
    scored by the sharded SFT model, give the one-process steps."""
    cfg = config("full", 2, 1, method="sft+dpo", max_steps=4)
    single, _ = one_process(
        tiny_qwen2, config("full", 2 * RANKS, 1, method="sft+dpo", max_steps=4), tmp_path / "one"
    )
    run_ranks(rank_target, RANKS, (tiny_qwen2, cfg, tmp_path), timeout_s=240)
    history = json.loads((tmp_path / "rank-0.json").read_text())["history"]
    assert [m["phase"] for m in history] == ["sft", "sft", "dpo", "dpo"]
    assert history[2]["margin_en"] == pytest.approx(0.0, abs=1e-5)  # the SFT model's own
    for got, want in zip(history, single["history"], strict=True):
        for key in ("loss", "nll", "grad_norm") + (
            ("margin_tgt",) if got["phase"] == "dpo" else ()
        ):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-5), (got["step"], key)
