"""Shared benchmark helpers: a realistic-vocabulary Qwen2 model, long CLO examples, RSS, tables.

Every benchmark builds its model here so the LM head is as large as a real model's (Qwen2's
151,936-entry vocabulary): that is where log-prob memory and time go, so a toy vocabulary
would hide exactly what the benchmarks are meant to show.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
QWEN2_VOCAB = 151_936


@dataclass(frozen=True)
class ModelShape:
    """Qwen2 hyper-parameters; `bench_43m` is the CPU benchmark, `qwen25_1p5b` the GPU one."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int = QWEN2_VOCAB
    tie_word_embeddings: bool = True


SHAPES = {
    # ~43M parameters, 90% of them in the (tied) 151,936 x 256 embedding / LM head.
    "bench_43m": ModelShape(256, 4, 4, 2, 1024),
    # Qwen2.5-1.5B's published config (random weights).
    "qwen25_1p5b": ModelShape(1536, 28, 12, 2, 8960),
    # For --smoke runs of the GPU script on a CPU: same code path, seconds instead of minutes.
    "smoke": ModelShape(64, 2, 4, 2, 128, vocab_size=4096),
}


def build_qwen2_model(
    out_dir: str | Path,
    shape: ModelShape,
    dtype: str = "float32",
    tokenizer_vocab: int = 8192,
    seed: int = 0,
) -> Path:
    """Save a random-weight Qwen2 model + locally trained byte-level BPE tokenizer to out_dir.

    The tokenizer uses fewer ids than the model's vocabulary (it is trained on the local
    corpus); the model keeps the full `shape.vocab_size` rows, as real checkpoints pad theirs.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from clo.tiny import train_byte_level_tokenizer

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_byte_level_tokenizer(min(tokenizer_vocab, shape.vocab_size))
    config = AutoConfig.for_model(
        "qwen2",
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=shape.tie_word_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        dtype=dtype,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    logger.info("built %s-parameter Qwen2 at %s", f"{model.num_parameters():,}", out)
    return out


def long_quadruples(lang: str = "de", join: int = 6, count: int | None = None) -> list[Any]:
    """CLO quadruples of ~300 tokens: `join` consecutive built-in examples merged into one.

    The shipped parallel data is short (~60 tokens per sequence); real instruction data
    (oasst1) is several times longer, and sequence length decides where time goes. When
    `count` exceeds what the data gives, the examples repeat (a second epoch).
    """
    from clo.pairs import Quadruple
    from clo.seed import builtin_parallel

    base = builtin_parallel(lang)
    out = []
    for start in range(0, len(base) - join + 1, join):
        group = base[start : start + join]
        out.append(
            Quadruple(
                x_en=" ".join(q.x_en for q in group),
                y_en="\n\n".join(q.y_en for q in group),
                x_tgt=" ".join(q.x_tgt for q in group),
                y_tgt="\n\n".join(q.y_tgt for q in group),
            )
        )
    if count is None:
        return out
    return [out[i % len(out)] for i in range(count)]


class PeakRss:
    """Samples this process's RSS from a background thread; `peak` is the highest seen.

    The sampler reads /proc via psutil, which does not need the GIL for long, and torch
    kernels release the GIL, so samples keep coming during heavy compute.
    """

    def __init__(self, interval_s: float = 0.005):
        import psutil

        self._proc = psutil.Process()
        self.interval_s = interval_s
        self.peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        return int(self._proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRss:
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


class Meter:
    """Training memory and time: CPU peak RSS by a sampler thread, CUDA peak allocated on GPU."""

    def __init__(self, device: str):
        import torch

        self.cuda = device.startswith("cuda")
        self.torch = torch
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        self.rss = PeakRss()
        self.base_rss = self.rss.current()

    def __enter__(self) -> Meter:
        self.rss.__enter__()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.started
        self.rss.__exit__(*exc)

    def report(self) -> dict[str, Any]:
        out = {
            "seconds": self.seconds,
            "rss_after_load_mb": self.base_rss / 2**20,
            "peak_rss_mb": self.rss.peak / 2**20,
            "train_mem_mb": (self.rss.peak - self.base_rss) / 2**20,
        }
        if self.cuda:
            peak = self.torch.cuda.max_memory_allocated()
            out.update(
                cuda_after_load_mb=self.base / 2**20,
                cuda_peak_mb=peak / 2**20,
                train_mem_mb=(peak - self.base) / 2**20,
            )
        return out


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_line() -> str:
    """Machine, date, commit and load average: printed above every result table."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = "?"
    return (
        f"{platform.node()} | {platform.processor() or platform.machine()} | "
        f"{os.cpu_count()} CPUs | {datetime.now(UTC):%Y-%m-%d %H:%M} UTC | "
        f"commit {commit or '?'} | load avg {load_average()}"
    )


def run_worker(module: str, args: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """Run `python -m module *args` in a fresh process; it prints one JSON line last.

    One process per configuration keeps each one's peak memory (and allocator caches) apart.
    """
    cmd = [sys.executable, "-m", module, *args]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table (Markdown pipe syntax, so it pastes into RESULTS.md as is)."""
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def save_result(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
