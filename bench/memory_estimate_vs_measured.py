"""The routing estimate (service.gpu_routing) next to measured peak memory, and the paper's models.

    python -m bench.memory_estimate_vs_measured                # both tables (prints only)
    python -m bench.memory_estimate_vs_measured --paper-only   # no training: the paper's table

Measured: each (model, trainable) trains 2 steps (batch 2, max_length 128, unpacked) in a
fresh process; the figure is the peak memory above what the process held once the model was
loaded and had run one forward pass (imports and kernel buffers done): on a GPU
`torch.cuda.max_memory_allocated`, on a CPU the peak resident set (VmHWM, reset through
/proc/self/clear_refs) minus the resident set then, which also holds the data, the
tokenizer's work and the CPU allocator's slack. Beside it the estimate above the weights:
the training state alone (masters, gradients, optimizer), and with the activations of a
micro-batch padded to max_length (what routing uses: the shipped data is shorter), for the
same precision (fp32 on a CPU without bf16), without gradient checkpointing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from clo.config import TrainConfig
from clo.memory_estimate import GIB, ModelShape, Precision, training_memory
from service.gpu_routing import (
    estimate_training,
    pick_class,
    read_model_config,
    trainable_params,
)

MIB = 1024**2
TRAINABLES = ("attention", "lora", "full")
# Published config.json values of the paper's models (the fields the estimate reads).
PAPER_MODELS: dict[str, dict[str, Any]] = {
    "Llama-2-7B": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, vocab_size=32000),
    "Llama-2-13B": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                        num_attention_heads=40, num_key_value_heads=40, vocab_size=32000),
    "Llama-3-8B": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=128256),
    "Mistral-7B": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=32000),
    "Qwen2.5-3B": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                       num_attention_heads=16, num_key_value_heads=2, vocab_size=151936,
                       tie_word_embeddings=True),
}  # fmt: skip
CLASSES = [24, 40, 48, 80]


def paper_table() -> list[str]:
    """GiB on one GPU, jobs' defaults (bf16, AdamW, batch 4, max_length 512)."""
    train = TrainConfig(precision="bf16")
    rows = [
        "| model | trainable | estimate GiB | with grad. ckpt GiB | smallest of 24/40/48/80 GB |",
        "|---|---|---|---|---|",
    ]
    for name, config in PAPER_MODELS.items():
        for trainable in TRAINABLES:
            memory = estimate_training(config, train.model_copy(update={"trainable": trainable}))
            picked = pick_class(memory, CLASSES)
            where = "none (422)" if picked is None else f"{picked[0]} GB"
            if picked is not None and picked[1] != memory.plain:
                where += " (checkpointing)"
            rows.append(
                f"| {name} | {trainable} | {memory.plain / GIB:.1f} "
                f"| {memory.checkpointed / GIB:.1f} | {where} |"
            )
    return rows


MEASURE = r"""
import gc, json, sys, torch
from pathlib import Path

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
model_dir, trainable, workdir = sys.argv[1:4]
import peft  # noqa: F401 - imported before the baseline, as everything the run loads
from clo.config import TrainConfig
from clo.loading import load_model_and_tokenizer
from clo.seed import builtin_parallel
from clo.trainer import train
cuda = torch.cuda.is_available()
model, tok = load_model_and_tokenizer(model_dir, device="cuda" if cuda else "cpu")
weights = sum(p.numel() * p.element_size() for p in model.parameters())
with torch.no_grad():  # kernels and their buffers initialised before the baseline
    model(torch.ones(2, 128, dtype=torch.long, device=model.device))
gc.collect()
if cuda:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
else:
    open("/proc/self/clear_refs", "w").write("5")  # peak RSS restarts from the current RSS
    before = status("VmRSS")
config = TrainConfig(trainable=trainable, max_steps=2, batch_size=2, max_length=128,
                     max_prompt_length=64, precision="bf16" if cuda else "fp32",
                     checkpoint_every=1000, gradient_checkpointing=False,
                     memory_budget_mb=10**7, pack_prompts=False)
train(model, tok, builtin_parallel("de")[:8], config, Path(workdir))
peak = torch.cuda.max_memory_allocated() if cuda else status("VmHWM")
print(json.dumps({"above_model": peak - before, "weights": weights,
                  "device": "cuda" if cuda else "cpu"}))
"""


def measure(model_dir: Path, trainable: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as work:
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, str(model_dir), trainable, work],
            capture_output=True, text=True, timeout=900,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measured_table(models: list[Path]) -> list[str]:
    rows = [
        "| model | trainable | weights MiB | estimate above the weights: state MiB "
        "| + activations at max_length MiB | measured above the loaded model MiB | device |",
        "|---|---|---|---|---|---|---|",
    ]
    for model_dir in models:
        config = read_model_config(str(model_dir))
        assert config is not None, model_dir
        shape = ModelShape.from_hf_config(SimpleNamespace(**config))
        for trainable in TRAINABLES:
            got = measure(model_dir, trainable)
            precision: Precision = "bf16" if got["device"] == "cuda" else "fp32"
            train = TrainConfig(trainable=trainable, batch_size=2, max_length=128,
                                max_prompt_length=64, precision=precision)  # fmt: skip
            worst = estimate_training(config, train).plain
            trained = trainable_params(shape, config, trainable, train.lora_r)
            state = training_memory(shape, precision=precision, trainable_params=trained)
            weights = got["weights"]
            rows.append(
                f"| {model_dir.name} | {trainable} | {weights / MIB:.1f} "
                f"| {(state.total - weights) / MIB:.1f} | {(worst - weights) / MIB:.1f} "
                f"| {got['above_model'] / MIB:.1f} | {got['device']} |"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-only", action="store_true")
    parser.add_argument("--models", nargs="*", type=Path, default=None,
                        help="model folders to measure (default: tiny-qwen2, then SmolLM2-135M "
                        "when imported under var/models)")  # fmt: skip
    args = parser.parse_args()
    print("\n".join(paper_table()))
    if args.paper_only:
        return
    models = args.models
    if models is None:
        from service_cli.demo import build_tiny_models

        folder = Path(tempfile.mkdtemp(prefix="mem-models-"))
        build_tiny_models(folder)
        models = [folder / "tiny-qwen2"]
        real = Path("var/models/smollm2-135m-instruct")
        if (real / "config.json").is_file():
            models.append(real)
    print()
    print("\n".join(measured_table(models)))


if __name__ == "__main__":
    main()
