"""Where our CLO training step spends its time: torch.profiler over a few steps of our trainer.

    python -m bench.profile_step --model var/models/smollm2-135m-instruct [--precision auto]

Same data, trainable set and settings as bench_trainer_vs_trl's `ours` (bench.trainer_runs):
~300-token examples, attention-only, one example (four sequences) per step. Prints the
operators by self CPU time and the share of the time that went to matrix multiplications,
the only part the matmul peak of bench.flops describes (issue 16: our step against the
machine's peak; the rest, elementwise, softmax, copies and the optimizer, does not run at
matmul speed).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

# aten operators that are matrix multiplications (or call one: linear, attention kernels)
MATMUL_OPS = (
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    "aten::mkldnn_linear",
)


def profile(model_dir: Path, precision: str, steps: int, join: int) -> Any:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from bench.common import long_quadruples
    from bench.trainer_runs import load, ours_config
    from clo.trainer import train

    model, tokenizer = load(model_dir, "cpu", "float32")
    quads = long_quadruples("de", join=join, count=steps)
    config = ours_config(steps, 1, precision)
    with tempfile.TemporaryDirectory() as workdir:
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            result = train(model, tokenizer, quads, config, Path(workdir))
    return prof, result.runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("var/models/smollm2-135m-instruct"))
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--join", type=int, default=6, help="built-in examples per example")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    prof, runtime = profile(args.model, args.precision, args.steps, args.join)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    print(f"model {args.model}, {args.steps} steps, runtime {runtime}")
    print(f"self CPU time {total / 1e6:.1f} s; matrix multiplications {matmul / total:.0%}")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
