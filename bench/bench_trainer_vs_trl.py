"""Our CLO trainer against TRL's DPOTrainer on the same data, model, trainable set and steps.

    python -m bench.bench_trainer_vs_trl            # ~43M Qwen2, 151,936 vocab, CPU
    python -m bench.bench_trainer_vs_trl --model var/models/smollm2-135m-instruct  # real
    python -m bench.bench_trainer_vs_trl --precision fp32   # both trainers in fp32

Configurations, all in the same precision (--precision; auto: bf16 where the machine has
bf16 matmul instructions, clo.precision): ours (the trainer's defaults), TRL's fastest
(precomputed reference log-probs, no gradient checkpointing), TRL's leanest (the same plus
gradient checkpointing) and TRL's defaults (a reference model copy, its own checkpointing).
A matmul microbenchmark in the same run gives the machine's peak per precision, and each
trainer's step rate is reported as FLOPs per second and as a share of that peak (bench.flops).

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
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` and `clo` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    SHAPES,
    build_qwen2_model,
    format_table,
    load_average,
    long_quadruples,
    machine_line,
    run_worker,
    save_result,
)
from bench.flops import SIZES  # noqa: E402
from bench.trainer_runs import run_ours, run_trl  # noqa: E402

logger = logging.getLogger(__name__)

CONFIGS = ("ours", "trl-fastest", "trl-leanest", "trl-default")
# "trl-best", the name bench/gpu_bench.py and older results use: TRL's leanest.
# "ours-unpacked": ours with pack_prompts off, to weigh packing (one prompt encoded for both
# responses) against its longer rows (attention is quadratic in the row length).
EXTRA_CONFIGS = ("trl-best", "matmul", "ours-unpacked")
RESULTS = Path(__file__).resolve().parent / "results"


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One configuration in this process; returns its figures."""
    import torch

    torch.manual_seed(0)
    if args.worker == "matmul":
        from bench.flops import peak_gflops

        return {"config": "matmul", "peak_gflops": peak_gflops(args.device, args.matmul_seconds)}
    quads = long_quadruples(args.lang, args.join, args.steps * args.batch)
    load_avg = load_average()
    precision = resolved_precision(args.precision, args.device)
    if args.worker in ("ours", "ours-unpacked"):
        out = run_ours(
            args.model_dir,
            quads,
            args.steps,
            args.batch,
            args.device,
            args.dtype,
            precision,
            args.ours_chunk,
            pack_prompts=args.worker == "ours",
            memory_budget_mb=args.ours_budget_mb,
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
            precision,
        )
    n = args.steps * args.batch
    out.update(
        config=args.worker,
        examples=n,
        examples_per_s=n / out["seconds"],
        tokens_per_s=out["tokens"] / out["seconds"],
        gflops_steps=out["train_flops"] / max(out["steps_s"], 1e-9) / 1e9,
        gflops_wall=out["train_flops"] / out["seconds"] / 1e9,
        load_avg_before=load_avg,
        load_avg_after=load_average(),
    )
    return out


def resolved_precision(setting: str, device: str) -> str:
    import torch

    from clo.precision import resolve_precision

    return resolve_precision(setting, torch.device(device))


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


LABELS = {
    "ours": "ours",
    "ours-unpacked": "ours unpacked",
    "trl-fastest": "TRL fastest",
    "trl-leanest": "TRL leanest",
    "trl-best": "TRL leanest",
    "trl-default": "TRL default",
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
        ("training GFLOP/s (steps)", "gflops_steps"),
        ("share of matmul peak (steps)", "peak_share"),
        ("training GFLOP/s (wall)", "gflops_wall"),
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


# issue 16's targets: (label, metric key, peer, target, higher is better)
TARGETS = {
    "real": [
        ("throughput >= 3x TRL fastest", "examples_per_s", "trl-fastest", 3.0, True),
        ("memory <= 0.4x TRL fastest", "train_mem_mb", "trl-fastest", 0.4, False),
    ],
    "synthetic": [
        ("throughput >= 4.5x TRL fastest", "examples_per_s", "trl-fastest", 4.5, True),
        ("memory <= 0.3x TRL fastest", "train_mem_mb", "trl-fastest", 0.3, False),
    ],
}
PEAK_SHARE_TARGET = 0.5


def verdict(results: dict[str, dict[str, Any]], kind: str) -> str:
    ours = results.get("ours", {})
    lines = []
    for name, key, peer, target, higher in TARGETS[kind]:
        value = ratio(ours.get(key), results.get(peer, {}).get(key))
        ok = value is not None and (value >= target if higher else value <= target)
        shown = "-" if value is None else f"{value:.2f}x"
        lines.append(f"- {name}: {shown} -> {'MET' if ok else 'MISSED'}")
    share = ours.get("peak_share")
    ok = share is not None and share >= PEAK_SHARE_TARGET
    shown = "-" if share is None else f"{share:.1%}"
    lines.append(
        f"- our step >= {PEAK_SHARE_TARGET:.0%} of the matmul peak: {shown} -> "
        f"{'MET' if ok else 'MISSED'}"
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
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a saved model to train instead of the synthetic --shape "
        "(e.g. var/models/smollm2-135m-instruct, from ./scripts/fetch-real-model)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="dtype the weights are loaded (and a synthetic model built) in",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="training precision of every configuration (auto: clo.precision's choice)",
    )
    p.add_argument(
        "--ours-chunk",
        type=int,
        default=None,
        help="our logprob_chunk_tokens (default: the trainer's default)",
    )
    p.add_argument(
        "--ours-budget-mb",
        type=int,
        default=None,
        help="our memory_budget_mb: below the estimate without checkpointing, the activation "
        "policy checkpoints as few layers as fit (default: the device's free memory)",
    )
    p.add_argument("--configs", default=",".join(CONFIGS), help="subset, comma-separated")
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="reuse a built synthetic model (default: build one in a temp dir)",
    )
    p.add_argument("--matmul-seconds", type=float, default=1.0, help="per matmul size")
    p.add_argument("--out", type=Path, default=None, help="default: bench/results/...txt")
    p.add_argument("--timeout", type=float, default=700, help="seconds per configuration")
    p.add_argument("--worker", choices=CONFIGS + EXTRA_CONFIGS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _run_config(name: str, common: list[str], args: argparse.Namespace) -> dict[str, Any]:
    print(f"running {name} (load avg {load_average()}) ...", file=sys.stderr, flush=True)
    try:
        return run_worker("bench.bench_trainer_vs_trl", [*common, "--worker", name], args.timeout)
    except subprocess.TimeoutExpired:
        # Keep the other configurations; this one's throughput is an upper bound.
        n = args.steps * args.batch
        return {
            "config": name,
            "timed_out": True,
            "seconds": args.timeout,
            "examples_per_s": n / args.timeout,
            "load_avg_after": load_average(),
        }


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    args = parse(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    precision = resolved_precision(args.precision, args.device)
    kind = "real" if args.model else "synthetic"
    label = args.model.name if args.model else args.shape
    out = args.out or RESULTS / (
        f"trainer_vs_trl_{label}_{precision}.txt" if args.model else "trainer_vs_trl.txt"
    )
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or args.model_dir or Path(tmp) / "model"
        if args.model is None:
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
            "--precision",
            precision,
            "--matmul-seconds",
            str(args.matmul_seconds),
            *(["--ours-chunk", str(args.ours_chunk)] if args.ours_chunk else []),
            *(["--ours-budget-mb", str(args.ours_budget_mb)] if args.ours_budget_mb else []),
        ]
        peak = _run_config("matmul", common, args).get("peak_gflops", {})
        results = {}
        for name in args.configs.split(","):
            results[name] = _run_config(name, common, args)
            if "gflops_steps" in results[name] and peak.get(precision):
                results[name]["peak_share"] = results[name]["gflops_steps"] / peak[precision]
            print(f"  {name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    done = [r for r in results.values() if "tokens" in r]
    tokens = done[0]["tokens"] / (4 * args.steps * args.batch) if done else float("nan")
    params = f"{done[0]['params_total']:,} params, {done[0]['trainable']:,} trained" if done else ""
    timed_out = [n for n, r in results.items() if r.get("timed_out")]
    peaks = ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in peak.items()) or "not measured"
    text = "\n\n".join(
        [
            f"CLO trainer vs TRL DPOTrainer — {label} ({params}), {args.device}, precision "
            f"{precision} (weights loaded in {args.dtype}), {args.steps} steps x {args.batch} "
            f"example(s) (4 sequences each, {tokens:.0f} tokens/sequence on average)",
            machine_line(),
            f"matmul peak (best of {', '.join(f'{n}²' for n in SIZES)}): {peaks}; training "
            "FLOPs = (4N + 2N_trainable) per token + 6·L·d·s² per sequence (bench.flops)",
            table(results),
            verdict(results, kind),
            *(
                [
                    f"TIMED OUT after {args.timeout:.0f} s (examples/s shown is an upper bound): "
                    + ", ".join(timed_out)
                ]
                if timed_out
                else []
            ),
            "Options used: "
            + json.dumps(
                {
                    k: v.get("trl_options") or v.get("ours_options")
                    for k, v in results.items()
                    if v.get("trl_options") or v.get("ours_options")
                }
            ),
        ]
    )
    print(text)
    save_result(out, text)


if __name__ == "__main__":
    main()
