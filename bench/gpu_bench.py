"""One command for a lent GPU: CLO attention-only vs TRL DPO on a Qwen2.5-1.5B-shaped model.

    python -m bench.gpu_bench                 # H100/H200: bf16, random weights, ~5 minutes
    python -m bench.gpu_bench --smoke         # CPU, tiny shape: checks the code path only

Reports tokens/s, peak CUDA memory and MFU per configuration. Training FLOPs per token are
counted as 4·N + 2·N_trainable for a frozen base (forward 2N, activation gradients 2N,
weight gradients 2 per trainable parameter), with N every parameter that multiplies per
token (the tied embedding counted once, as the LM head); attention's sequence-squared FLOPs
and gradient-checkpointing recomputation are not counted, as usual for MFU. "MFU (steps)"
uses the median optimizer step; "MFU (wall)" the whole run including the reference pass.
"""

from __future__ import annotations

import argparse
import json
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
    machine_line,
    run_worker,
    save_result,
)

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_MFU = 0.30
# Dense bf16 peak, TFLOP/s (vendor datasheets, without sparsity).
PEAK_BF16_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIE", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM / HBM3
    ("A100", 312.0),
    ("L40S", 362.0),
)


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a card by its CUDA name, e.g. 'NVIDIA H100 80GB HBM3' -> 989."""
    upper = device_name.upper()
    for key, value in PEAK_BF16_TFLOPS:
        if key in upper:
            return value
    return None


def flops_per_token(n_params: int, n_trainable: int) -> float:
    return 4.0 * n_params + 2.0 * n_trainable


def mfu(tokens_per_s: float, n_params: int, n_trainable: int, peak: float | None) -> float | None:
    if peak is None or not tokens_per_s:
        return None
    return tokens_per_s * flops_per_token(n_params, n_trainable) / (peak * 1e12)


def device_name(device: str) -> str:
    if not device.startswith("cuda"):
        import platform

        return f"CPU {platform.processor() or platform.machine()}"
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: run with --smoke on a CPU machine")
    return torch.cuda.get_device_name(0)


def rows_for(results: dict[str, dict[str, Any]], peak: float | None, steps: int) -> list[list[Any]]:
    rows = []
    for name, r in results.items():
        step_tokens_per_s = r["tokens"] / steps / r["step_s"]
        rows.append(
            [
                name,
                round(r["tokens_per_s"]),
                round(step_tokens_per_s),
                r.get("cuda_peak_mb", r.get("peak_rss_mb")),
                r["train_mem_mb"],
                mfu(r["tokens_per_s"], r["params_total"], r["trainable"], peak),
                mfu(step_tokens_per_s, r["params_total"], r["trainable"], peak),
                r["final_loss"],
            ]
        )
    return rows


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny shape on CPU, 2 steps")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=8, help="examples per step (4 sequences each)")
    p.add_argument("--configs", default="ours,trl-best,trl-default")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="override the bf16 peak looked up from the device name",
    )
    p.add_argument("--model-dir", type=Path, default=None, help="reuse a built model")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--timeout", type=float, default=900, help="seconds per configuration")
    args = p.parse_args(argv)
    if args.smoke:
        args.steps, args.batch = min(args.steps, 2), min(args.batch, 1)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    shape, device, dtype = (
        ("smoke", "cpu", "float32") if args.smoke else ("qwen25_1p5b", "cuda", "bfloat16")
    )
    name = device_name(device)
    peak = args.peak_tflops or peak_tflops(name)
    out = args.out or RESULTS / ("gpu_smoke.txt" if args.smoke else "gpu.txt")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or Path(tmp) / "model"
        build_qwen2_model(model_dir, SHAPES[shape], dtype=dtype)
        common = [
            "--model-dir",
            str(model_dir),
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
            "--device",
            device,
            "--dtype",
            dtype,
            "--shape",
            shape,
        ]
        results = {}
        for config in args.configs.split(","):
            print(f"running {config} ...", file=sys.stderr, flush=True)
            results[config] = run_worker(
                "bench.bench_trainer_vs_trl", [*common, "--worker", config], args.timeout
            )
    first = next(iter(results.values()))
    text = "\n\n".join(
        [
            f"GPU benchmark — {shape} ({first['params_total']:,} params, "
            f"{first['trainable']:,} trainable, attention-only), {dtype}, {args.steps} steps x "
            f"{args.batch} examples, device {name}, peak {peak or '?'} TFLOP/s bf16",
            machine_line(),
            format_table(
                [
                    "config",
                    "tokens/s (wall)",
                    "tokens/s (steps)",
                    "peak memory MB",
                    "training memory MB",
                    "MFU (wall)",
                    "MFU (steps)",
                    "final loss",
                ],
                rows_for(results, peak, args.steps),
            ),
            f"target: MFU >= {TARGET_MFU:.0%} for ours",
            "raw: " + json.dumps(results, default=str),
        ]
    )
    print(text)
    save_result(out, text)


if __name__ == "__main__":
    main()
