"""Our CLO trainer against TRL's DPOTrainer on the same data, model, trainable set and steps.

    python -m bench.bench_trainer_vs_trl            # ~43M Qwen2, 151,936 vocab, CPU
    python -m bench.bench_trainer_vs_trl --steps 4  # quicker

Each configuration runs in its own process (so peak memory does not mix) and reports
examples/s, tokens/s, training memory and the final loss. The clock starts after the model
is loaded and stops after the last optimizer step, so tokenization and the reference
log-prob pass count for both trainers.

The closest TRL setup to CLO: every example becomes two DPO rows, (x_en: y_en > y_tgt) and
(x_tgt: y_tgt > y_en), with loss_type ["sigmoid", "sft"] weighted 0.5/0.5 (λ = 0.5). One
difference stays: TRL's SFT term covers the chosen side of BOTH rows (English included),
CLO's NLL only the target-language response. Attention projections (q/k/v/o) train in both;
everything else is frozen with the same function (clo.trainable.apply_trainable).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` and `clo` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    SHAPES,
    Meter,
    build_qwen2_model,
    format_table,
    load_average,
    long_quadruples,
    machine_line,
    run_worker,
    save_result,
)

logger = logging.getLogger(__name__)

CONFIGS = ("ours", "trl-best", "trl-default")
# Optional: TRL's memory options with its default precision (bf16 autocast, slow on CPUs
# without bf16 instructions); "trl-best" runs in our precision instead (fp32 on CPU).
EXTRA_CONFIGS = ("trl-best-bf16",)
LEARNING_RATE = 5e-6
MAX_LENGTH = 512
MAX_PROMPT_LENGTH = 256
RESULTS = Path(__file__).resolve().parent / "results"


def load(model_dir: Path, device: str, dtype: str) -> tuple[Any, Any]:
    from clo.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(model_dir, dtype=dtype, device=device)


def count_tokens(tokenizer: Any, quads: list[Any]) -> int:
    """Prompt+response tokens of the four sequences of every example (what both trainers see)."""
    from clo.encoding import encode_quads

    encoded, _ = encode_quads(tokenizer, quads, MAX_LENGTH, MAX_PROMPT_LENGTH)
    return sum(len(s.input_ids) for seqs in encoded for s in seqs)


def run_ours(
    model_dir: Path,
    quads: list[Any],
    steps: int,
    batch: int,
    device: str,
    dtype: str,
    chunk_tokens: int | None = None,
) -> dict[str, Any]:
    from clo.config import TrainConfig
    from clo.trainer import train

    model, tokenizer = load(model_dir, device, dtype)
    config = TrainConfig(
        trainable="attention",
        max_steps=steps,
        batch_size=batch,
        learning_rate=LEARNING_RATE,
        max_length=MAX_LENGTH,
        max_prompt_length=MAX_PROMPT_LENGTH,
        checkpoint_every=steps,
        **({"logprob_chunk_tokens": chunk_tokens} if chunk_tokens else {}),
    )
    step_times: list[float] = []
    first_step_at: list[float] = []
    with tempfile.TemporaryDirectory() as workdir, Meter(device) as meter:

        def progress(event: dict[str, Any]) -> None:
            step_times.append(event["step_seconds"])
            if not first_step_at:
                first_step_at.append(time.perf_counter() - meter.started - event["step_seconds"])

        result = train(model, tokenizer, quads, config, Path(workdir), progress=progress)
    trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
    return {
        **meter.report(),
        "final_loss": result.metrics.get("loss"),
        "params_total": sum(p.numel() for p in result.model.parameters()),
        "setup_s": first_step_at[0] if first_step_at else None,
        "step_s": sorted(step_times)[len(step_times) // 2],
        "trainable": trainable,
        "tokens": count_tokens(tokenizer, quads),
    }


def trl_rows(tokenizer: Any, quads: list[Any]) -> list[dict[str, str]]:
    """Two DPO rows per example; prompts rendered with the same chat template as ours."""

    def prompt(text: str) -> str:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )

    rows = []
    for q in quads:
        rows.append({"prompt": prompt(q.x_en), "chosen": q.y_en, "rejected": q.y_tgt})
        rows.append({"prompt": prompt(q.x_tgt), "chosen": q.y_tgt, "rejected": q.y_en})
    return rows


def run_trl(
    model_dir: Path, quads: list[Any], steps: int, batch: int, device: str, dtype: str, mode: str
) -> dict[str, Any]:
    """mode "best": precomputed reference log-probs + gradient checkpointing, our precision;
    "best-bf16": the same with TRL's default precision; "default": DPOConfig's defaults
    (a reference model copy, gradient checkpointing and bf16 on by default)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from clo.config import TrainConfig
    from clo.trainable import apply_trainable

    model, tokenizer = load(model_dir, device, dtype)
    apply_trainable(model, TrainConfig(trainable="attention"))
    rows = trl_rows(tokenizer, quads)
    step_times: list[float] = []

    class Timer(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.begin = time.perf_counter()
            self.last = self.begin

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            now = time.perf_counter()
            step_times.append(now - self.last)
            self.last = now

    timer = Timer()
    options: dict[str, Any] = {}
    if mode.startswith("best"):
        options = {"precompute_ref_log_probs": True, "gradient_checkpointing": True}
    if mode == "best":
        options["bf16"] = dtype == "bfloat16" or device.startswith("cuda")
    with tempfile.TemporaryDirectory() as out_dir, Meter(device) as meter:
        config = DPOConfig(
            output_dir=out_dir,
            per_device_train_batch_size=2 * batch,
            max_steps=steps,
            learning_rate=LEARNING_RATE,
            lr_scheduler_type="cosine",
            beta=0.1,
            loss_type=["sigmoid", "sft"],
            loss_weights=[0.5, 0.5],
            max_length=MAX_LENGTH,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
            use_cpu=not device.startswith("cuda"),
            dataloader_num_workers=0,
            seed=0,
            **options,
        )
        trainer = DPOTrainer(
            model=model,
            args=config,
            processing_class=tokenizer,
            train_dataset=Dataset.from_list(rows),
            callbacks=[timer],
        )
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        **meter.report(),
        "final_loss": losses[-1] if losses else None,
        "params_total": sum(p.numel() for p in model.parameters()),
        "setup_s": timer.begin - meter.started,
        "step_s": sorted(step_times)[len(step_times) // 2],
        "trainable": trainable,
        "tokens": count_tokens(tokenizer, quads),
        "trl_options": {
            "gradient_checkpointing": config.gradient_checkpointing,
            "bf16": config.bf16,
            "precompute_ref_log_probs": config.precompute_ref_log_probs,
        },
    }


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One configuration in this process; returns its figures."""
    import torch

    torch.manual_seed(0)
    quads = long_quadruples(args.lang, args.join, args.steps * args.batch)
    load_avg = load_average()
    if args.worker == "ours":
        out = run_ours(
            args.model_dir, quads, args.steps, args.batch, args.device, args.dtype, args.ours_chunk
        )
    else:
        out = run_trl(
            args.model_dir,
            quads,
            args.steps,
            args.batch,
            args.device,
            args.dtype,
            args.worker.removeprefix("trl-"),
        )
    n = args.steps * args.batch
    out.update(
        config=args.worker,
        examples=n,
        examples_per_s=n / out["seconds"],
        tokens_per_s=out["tokens"] / out["seconds"],
        load_avg_before=load_avg,
        load_avg_after=load_average(),
    )
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


LABELS = {
    "ours": "ours",
    "trl-best": "TRL best",
    "trl-default": "TRL default",
    "trl-best-bf16": "TRL best (bf16)",
}


def table(results: dict[str, dict[str, Any]]) -> str:
    """One column per configuration, then ours/peer ratios for every peer that ran."""
    metrics = [
        ("examples/s", "examples_per_s"),
        ("tokens/s", "tokens_per_s"),
        ("training memory MB", "train_mem_mb"),
        ("memory after load MB", "rss_after_load_mb"),
        ("wall s (incl. ref pass)", "seconds"),
        ("setup + ref pass s", "setup_s"),
        ("median step s", "step_s"),
        ("final loss", "final_loss"),
        ("trainable params", "trainable"),
        ("load avg (1/5/15) after", "load_avg_after"),
    ]
    names = list(results)
    peers = [n for n in names if n != "ours"]
    ours = results.get("ours", {})
    rows = []
    for label, key in metrics:
        no_ratio = key in ("load_avg_after", "trainable")
        rows.append(
            [
                label,
                *(results[n].get(key) for n in names),
                *(None if no_ratio else ratio(ours.get(key), results[n].get(key)) for n in peers),
            ]
        )
    return format_table(
        [
            "metric",
            *(LABELS.get(n, n) for n in names),
            *(f"ours/{LABELS.get(n, n)}" for n in peers),
        ],
        rows,
    )


def verdict(results: dict[str, dict[str, Any]]) -> str:
    ours, best, default = (results.get(c, {}) for c in CONFIGS)
    checks = [
        (
            "throughput >= 2x TRL best",
            ratio(ours.get("examples_per_s"), best.get("examples_per_s")),
            2.0,
            True,
        ),
        (
            "memory <= 0.5x TRL best",
            ratio(ours.get("train_mem_mb"), best.get("train_mem_mb")),
            0.5,
            False,
        ),
        (
            "throughput >= 2.5x TRL default",
            ratio(ours.get("examples_per_s"), default.get("examples_per_s")),
            2.5,
            True,
        ),
    ]
    lines = []
    for name, value, target, higher in checks:
        ok = value is not None and (value >= target if higher else value <= target)
        lines.append(
            f"- {name}: {'-' if value is None else f'{value:.2f}x'} -> {'MET' if ok else 'MISSED'}"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per configuration")
    p.add_argument("--batch", type=int, default=1, help="examples per step (4 sequences each)")
    p.add_argument(
        "--join",
        type=int,
        default=6,
        help="built-in examples merged per example (6 gives ~300-token sequences)",
    )
    p.add_argument("--lang", default="de")
    p.add_argument("--shape", default="bench_43m", choices=sorted(SHAPES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument(
        "--ours-chunk",
        type=int,
        default=None,
        help="our logprob_chunk_tokens (default: the trainer's default)",
    )
    p.add_argument("--configs", default=",".join(CONFIGS), help="subset, comma-separated")
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="reuse a built model (default: build one in a temp dir)",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "trainer_vs_trl.txt")
    p.add_argument("--timeout", type=float, default=700, help="seconds per configuration")
    p.add_argument("--worker", choices=CONFIGS + EXTRA_CONFIGS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    args = parse(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or Path(tmp) / "model"
        build_qwen2_model(model_dir, SHAPES[args.shape], dtype=args.dtype)
        common = [
            "--model-dir",
            str(model_dir),
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
            "--join",
            str(args.join),
            "--lang",
            args.lang,
            "--device",
            args.device,
            "--dtype",
            args.dtype,
            *(["--ours-chunk", str(args.ours_chunk)] if args.ours_chunk else []),
        ]
        results = {}
        for name in args.configs.split(","):
            print(f"running {name} (load avg {load_average()}) ...", file=sys.stderr, flush=True)
            try:
                results[name] = run_worker(
                    "bench.bench_trainer_vs_trl", [*common, "--worker", name], args.timeout
                )
            except subprocess.TimeoutExpired:
                # Keep the other configurations; this one's throughput is an upper bound.
                n = args.steps * args.batch
                results[name] = {
                    "config": name,
                    "timed_out": True,
                    "seconds": args.timeout,
                    "examples_per_s": n / args.timeout,
                    "load_avg_after": load_average(),
                }
            print(f"  {name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    done = [r for r in results.values() if "tokens" in r]
    tokens = done[0]["tokens"] / (4 * args.steps * args.batch) if done else float("nan")
    timed_out = [n for n, r in results.items() if r.get("timed_out")]
    text = "\n\n".join(
        [
            f"CLO trainer vs TRL DPOTrainer — {args.shape}, {args.device} {args.dtype}, "
            f"{args.steps} steps x {args.batch} example(s) (4 sequences each, "
            f"{tokens:.0f} tokens/sequence on average)",
            machine_line(),
            table(results),
            verdict(results),
            *(
                [
                    f"TIMED OUT after {args.timeout:.0f} s (examples/s shown is an upper bound): "
                    + ", ".join(timed_out)
                ]
                if timed_out
                else []
            ),
            "TRL options used: "
            + json.dumps(
                {k: v.get("trl_options") for k, v in results.items() if v.get("trl_options")}
            ),
        ]
    )
    print(text)
    save_result(args.out, text)


if __name__ == "__main__":
    main()
