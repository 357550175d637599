"""Per-rank training memory and step time, 1 process vs 2 ranks (gloo, CPU), per trainable set.

`python -m bench.distributed_cpu` builds a small Qwen2 (hidden 256, 4 layers, 2,048-entry
vocabulary), trains 6 CLO steps with the same global batch (4 examples) as one process and
as 2 ranks of 2 (DDP for attention/lora, FSDP2 for full), and prints one table: per rank,
the bytes of parameters, gradients (one per trainable parameter, fp32) and AdamW state this
rank holds, and the mean step time after the first step (the first pays DTensor's one-time
sharding set-up). Tensor bytes, not RSS: forked ranks share the parent's pages, so their RSS
says little. Prints only; nothing is written under bench/results.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.config import TrainConfig
from clo.distributed import Ranks
from clo.distributed_launch import run_ranks
from clo.distributed_model import local_bytes, optimizer_state_bytes
from clo.distributed_train import make_run, run_distributed
from clo.pairs import Quadruple
from clo.tiny import build_tiny_causal_lm
from clo.trainer import TrainingRun, run_training

QUADS = [
    Quadruple(
        f"Question {i}: tell me about the number {i}.",
        f"The number {i}." + " It is a number." * (i % 4 + 2),
        f"Frage {i}: Erzähl mir von der Zahl {i}.",
        f"Die Zahl {i}." + " Es ist eine Zahl." * (5 - i % 4),
    )
    for i in range(16)
]
STEPS = 6
GLOBAL_BATCH = 4


def config(trainable: str, batch_size: int) -> TrainConfig:
    return TrainConfig(
        trainable=trainable,
        max_steps=STEPS,
        batch_size=batch_size,
        max_length=128,
        max_prompt_length=48,
        learning_rate=1e-3,
        checkpoint_every=1000,
        pack_prompts=False,  # the rows the ranks forward (packing is one process only)
    )


def figures(run: TrainingRun, history: list[dict[str, Any]]) -> dict[str, float]:
    trainable = sum(local_bytes(p) for _, p in run.named_params)
    return {
        "params_mb": sum(local_bytes(p) for p in run.model.parameters()) / 1e6,
        "grads_mb": trainable / 1e6,
        "optimizer_mb": optimizer_state_bytes(run.optimizer) / 1e6,
        "step_s": sum(m["step_seconds"] for m in history[1:]) / (len(history) - 1),
    }


def rank_target(ranks: Ranks, model_dir: Path, trainable: str, out: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = config(trainable, GLOBAL_BATCH // ranks.world_size)
    run = make_run(model, tok, QUADS, cfg, out / "work")
    result = run_distributed(run, None, None)
    (out / f"rank-{ranks.rank}.json").write_text(json.dumps(figures(run, result.history)))


def one_process(model_dir: Path, trainable: str, out: Path) -> dict[str, float]:
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    run = TrainingRun(model, tok, QUADS, config(trainable, GLOBAL_BATCH), out, None)
    return figures(run, run_training(run, None, None).history)


def main() -> None:
    torch.set_num_threads(1)  # one core per rank, and the same for one process
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        model_dir = build_tiny_causal_lm(
            tmp / "model", hidden_size=256, num_layers=4, intermediate_size=1024
        )
        n = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters())
        print(
            f"# {n / 1e6:.2f}M params, {STEPS} steps, global batch {GLOBAL_BATCH}, "
            f"load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}"
        )
        print("| trainable | ranks | params MB/rank | grads MB/rank | AdamW MB/rank | step s |")
        print("|---|---|---|---|---|---|")
        for trainable in ("attention", "lora", "full"):
            rows = [one_process(model_dir, trainable, tmp / f"one-{trainable}")]
            out = tmp / f"two-{trainable}"
            out.mkdir()
            run_ranks(rank_target, 2, (model_dir, trainable, out), timeout_s=600)
            rows.append(json.loads((out / "rank-0.json").read_text()))
            for ranks, row in zip((1, 2), rows, strict=True):
                print(
                    f"| {trainable} | {ranks} | {row['params_mb']:.2f} | {row['grads_mb']:.2f} "
                    f"| {row['optimizer_mb']:.2f} | {row['step_s']:.3f} |"
                )


if __name__ == "__main__":
    main()
