"""Step time and peak memory of what-to-train (attention / lora / full) and methods (clo / sft /
sft+dpo) on one small local model; each configuration runs in its own process so its peak
RSS (or peak CUDA memory) is its own. Also reports the exported adapter size.

    python bench/bench_trainer_modes.py [--hidden 512 --layers 4 --steps 8 --batch 4]
    python -m bench.bench_trainer_modes --base-model var/models/smollm2-135m-instruct \
        --cases clo/attention,sft/attention --precision auto --max-length 256 --threads 2

With both clo/attention and sft/attention it also prints CLO's step time over SFT's (the
performance issue's target: <= 2.2x; four sequences against two make 2x the floor).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a file (each case's child process): import `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Meter  # noqa: E402

CASES = [
    ("clo", "attention"),
    ("clo", "lora"),
    ("clo", "full"),
    ("sft", "attention"),
    ("sft+dpo", "attention"),
    # The paper's memory comparison is attention-only CLO against full-parameter DPO and SFT.
    ("dpo", "attention"),
    ("dpo", "full"),
    ("sft", "full"),
]


def run_one(args: argparse.Namespace) -> dict:
    import torch

    from clo.config import TrainConfig
    from clo.export import export_adapter, export_merged
    from clo.loading import load_model_and_tokenizer
    from clo.seed import builtin_parallel
    from clo.trainer import train

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tok = load_model_and_tokenizer(args.model)
    device = str(next(model.parameters()).device)
    quads = builtin_parallel("de")[: args.examples]
    cfg = TrainConfig(
        method=args.method,
        trainable=args.trainable,
        max_steps=args.steps,
        batch_size=args.batch,
        max_length=args.max_length,
        max_prompt_length=args.max_length // 2,
        learning_rate=1e-4,
        lora_r=16,
        lora_alpha=32,
        group_by_length=not args.no_group_by_length,
        precision=args.precision,
    )
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        # net of the loaded model: what training itself costs, as the paper compares it
        with Meter(device) as meter:
            result = train(
                model,
                tok,
                quads,
                cfg,
                Path(tmp) / "work",
                progress=lambda m: times.append(m["step_seconds"]),
            )
        memory = meter.report()
        meta = dict(
            config=cfg, base_model=args.model, base_revision=None, data_hash="bench", metrics={}
        )
        out = Path(tmp) / "export"
        if args.trainable == "full":
            export_merged(result.model, tok, out, **meta)
            weights = sum(p.stat().st_size for p in out.glob("*.safetensors"))
        else:
            export_adapter(result.model, tok, out, **meta)
            weights = (out / "adapter_model.safetensors").stat().st_size
    trainable = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
    return {
        "method": args.method,
        "trainable": args.trainable,
        "step_ms_median": 1000 * statistics.median(times[1:] or times),
        "train_wall_s": memory["seconds"],
        "trainable_params": trainable,
        "peak_rss_mb": memory["peak_rss_mb"],
        "train_mb": memory["peak_rss_mb"] - memory["rss_after_load_mb"],
        "cuda_train_mb": memory["train_mem_mb"] if "cuda_peak_mb" in memory else None,
        "export_mb": weights / 2**20,
    }


def device_line() -> str:
    import torch

    from clo.loading import resolve_dtype

    device = torch.device("cuda")
    return f"{torch.cuda.get_device_name(0)}, {resolve_dtype(None, device)} weights, bf16 autocast"


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--examples", type=int, default=32, help="Training quadruples used.")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per run.")
    ap.add_argument(
        "--no-group-by-length",
        action="store_true",
        help="Batch examples in plain random order (to measure what grouping saves).",
    )
    ap.add_argument(
        "--cases",
        default=",".join(f"{m}/{t}" for m, t in CASES),
        help="Comma-separated method/trainable pairs to run (default: all).",
    )
    ap.add_argument(
        "--base-model", type=Path, help="a saved model folder instead of a built random one"
    )
    ap.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16", "auto"], help="TrainConfig's"
    )
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--trainable", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.method:  # child process: one configuration
        print(json.dumps(run_one(args)))
        return

    from clo.tiny import build_tiny_causal_lm

    with tempfile.TemporaryDirectory() as tmp:
        model = args.base_model or build_tiny_causal_lm(
            Path(tmp) / "model",
            hidden_size=args.hidden,
            num_layers=args.layers,
            num_heads=8,
            num_kv_heads=2,
            intermediate_size=args.hidden * 8 // 3,
        )
        rows = []
        for case in args.cases.split(","):
            method, trainable = case.split("/")
            cmd = [
                sys.executable,
                __file__,
                "--model",
                str(model),
                "--method",
                method,
                "--trainable",
                trainable,
                "--steps",
                str(args.steps),
                "--batch",
                str(args.batch),
                "--max-length",
                str(args.max_length),
                "--examples",
                str(args.examples),
                "--threads",
                str(args.threads),
                "--precision",
                args.precision,
                *(["--no-group-by-length"] if args.no_group_by_length else []),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    shape = args.base_model or f"qwen2 hidden={args.hidden} layers={args.layers}"
    print(
        f"model: {shape}; precision {args.precision}; batch={args.batch} "
        f"examples (x4 sequences), max_length={args.max_length}, {args.steps} steps, "
        + (device_line() if torch_cuda() else f"{args.threads} CPU thread(s)")
    )
    header = (
        f"{'method':8} {'trainable':9} {'step ms':>8} {'wall s':>7} {'trainable':>11} "
        f"{'peak RSS MB':>11} {'train MB':>8} {'CUDA train MB':>13} {'export MB':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        cuda = f"{r['cuda_train_mb']:.0f}" if r["cuda_train_mb"] is not None else "-"
        print(
            f"{r['method']:8} {r['trainable']:9} {r['step_ms_median']:8.0f} "
            f"{r['train_wall_s']:7.1f} "
            f"{r['trainable_params']:11,d} {r['peak_rss_mb']:11.0f} {r['train_mb']:8.0f} "
            f"{cuda:>13} {r['export_mb']:9.2f}"
        )
    print_paper_comparison(rows)
    print_step_ratio(rows)


def print_step_ratio(rows: list[dict]) -> None:
    """CLO over SFT (attention-only both): the median step, and the wall time of the whole
    train call (same steps and batch, so per example), which also counts CLO's reference
    pass; the issue's target (<= 2.2x) is on the wall time per example."""
    by_case = {(r["method"], r["trainable"]): r for r in rows}
    clo, sft = by_case.get(("clo", "attention")), by_case.get(("sft", "attention"))
    if clo and sft:
        step = clo["step_ms_median"] / sft["step_ms_median"]
        wall = clo["train_wall_s"] / sft["train_wall_s"]
        print(
            f"\nCLO / SFT, attention-only: wall time per example {wall:.2f}x "
            f"(target <= 2.2x, floor 2x), median step {step:.2f}x"
        )


# The paper's memory figures for attention-only CLO, relative to full-parameter training.
PAPER_MEMORY_RATIOS = {("dpo", "full"): 0.70, ("sft", "full"): 1.55}


def print_paper_comparison(rows: list[dict]) -> None:
    """CLO/attention training memory over each full-parameter peer, ours beside the paper's."""
    by_case = {(r["method"], r["trainable"]): r for r in rows}
    clo = by_case.get(("clo", "attention"))
    if clo is None:
        return
    key = "cuda_train_mb" if clo["cuda_train_mb"] is not None else "train_mb"
    print(f"\nCLO/attention {key} over each peer (ours vs the paper's ratio):")
    for case, paper in PAPER_MEMORY_RATIOS.items():
        peer = by_case.get(case)
        if peer is not None and peer[key]:
            ours = clo[key] / peer[key]
            print(f"  vs {case[0]}/{case[1]}: {ours:.2f}x (paper: {paper:.2f}x)")


if __name__ == "__main__":
    main()
