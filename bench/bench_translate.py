"""Translation throughput: our batched Translator vs a naive loop, and its two backends.

Same tiny M2M100 (random weights, built locally), same CPU, same sentences, same decoding
(beam size and per-sentence length cap); then the full stage cold and with a warm cache;
then the transformers backend beside the ctranslate2 one (float32 and int8), each in its
own process (peak RSS apart), greedy and with --beams, with how many outputs are equal.

    python -m bench.bench_translate [--n 200] [--beams 4] [--threads 1] [--model DIR]
                                    [--skip-naive] [--no-backends] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

# (backend, compute type) per process; the transformers backend has no int8 path
ENGINES = [("transformers", "float32"), ("ctranslate2", "float32"), ("ctranslate2", "int8")]


def seed_sentences(n: int) -> list[str]:
    """The first n distinct sentences of the shipped English seed set."""
    from clo.seed import builtin_seed
    from clo.translate.segment import split_sentences

    out: list[str] = []
    for ex in builtin_seed():
        for text in (ex.prompt, ex.response):
            for line in text.splitlines():
                out.extend(s.strip() for s in split_sentences(line) if s.strip())
    unique = list(dict.fromkeys(out))
    if len(unique) < n:
        raise SystemExit(f"only {len(unique)} distinct seed sentences, asked for {n}")
    return unique[:n]


def naive(translator, sentences: list[str], target: str) -> tuple[float, list[str]]:
    """The loop people write first: tokenize, generate and decode one sentence at a time."""
    tok, model = translator.tokenizer, translator.model
    decoding = translator.config.decoding
    tok.src_lang = translator.language_code("en")
    forced = tok.get_lang_id(translator.language_code(target))
    outputs = []
    start = time.perf_counter()
    with torch.no_grad():
        for sentence in sentences:
            enc = tok(sentence, return_tensors="pt")
            # same length cap as the batched path, computed for this sentence alone
            cap = min(
                decoding.max_new_tokens,
                math.ceil(enc["input_ids"].shape[1] * decoding.length_factor) + 10,
            )
            ids = model.generate(
                **enc,
                forced_bos_token_id=forced,
                num_beams=decoding.num_beams,
                max_new_tokens=cap,
                do_sample=False,
            )
            # M2M100Tokenizer does not mark __de__ special: drop it by id, as Translator does
            kept = [t for t in ids[0].tolist() if t not in translator._strip_ids]
            outputs.append(tok.decode(kept, skip_special_tokens=True).strip())
    return time.perf_counter() - start, outputs


def engine_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One backend in this fresh process: load, warm up, time each decoding (best of repeats)."""
    from bench.common import PeakRss
    from clo.translate import Decoding, TranslatorConfig, make_translator

    torch.set_num_threads(spec["threads"])
    sentences = seed_sentences(spec["n"])
    extra = {} if spec["backend"] == "transformers" else {"compute_type": spec["compute_type"]}
    config = TranslatorConfig(
        model=spec["model"],
        device="cpu",
        batch_tokens=spec["batch_tokens"],
        quality_check="off",
        backend=spec["backend"],
        ct2_cache_dir=spec["ct2_cache"] if spec["backend"] == "ctranslate2" else None,
        **extra,
    )
    with PeakRss() as rss:
        before_load = rss.current()
        started = time.perf_counter()
        translator = make_translator(config)
        load_s = time.perf_counter() - started
        after_load = rss.current()
        translator.translate(sentences[:4], "en", spec["target"])  # warm-up
        runs = []
        for beams in spec["beams"]:
            decoding = Decoding(num_beams=beams)
            best = math.inf
            for _ in range(spec["repeats"]):
                started = time.perf_counter()
                out = translator.translate(sentences, "en", spec["target"], decoding)
                best = min(best, time.perf_counter() - started)
            # output tokens counted by re-tokenizing the text: equal outputs, equal counts
            ids = translator.tokenizer(out, add_special_tokens=False)["input_ids"]
            tokens = sum(len(x) for x in ids)
            runs.append({"beams": beams, "seconds": best, "tokens": tokens, "outputs": out})
    return {
        "load_s": load_s,
        "rss_before_load_mb": before_load / 2**20,
        "rss_after_load_mb": after_load / 2**20,
        "peak_rss_mb": rss.peak / 2**20,
        "runs": runs,
    }


def describe(model_dir: Path) -> str:
    """The model's shape, from its config.json (the benchmark's models have random weights)."""
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return (
        f"random-weight M2M100 (d_model {cfg['d_model']}, {cfg['encoder_layers']}+"
        f"{cfg['decoder_layers']} layers, ffn {cfg['encoder_ffn_dim']}, vocab {cfg['vocab_size']})"
    )


def compare_backends(args: argparse.Namespace, model_dir: Path, work: Path) -> str:
    """The transformers and ctranslate2 backends side by side, one process per engine."""
    from bench.common import format_table, machine_line, run_worker
    from clo.translate import TranslatorConfig
    from clo.translate.ct2 import converted_model

    cache = work / "ct2"
    started = time.perf_counter()  # once per checkpoint, then cached: timed apart
    converted_model(
        TranslatorConfig(model=str(model_dir), backend="ctranslate2", ct2_cache_dir=str(cache))
    )
    convert_s = time.perf_counter() - started
    beams = sorted({1, args.beams})
    results = {}
    for backend, compute_type in ENGINES:
        spec = {
            "backend": backend,
            "compute_type": compute_type,
            "model": str(model_dir),
            "ct2_cache": str(cache),
            "n": args.n,
            "threads": args.threads,
            "batch_tokens": args.batch_tokens,
            "target": args.target,
            "beams": beams,
            "repeats": args.repeats,
        }
        worker_args = ["--engine-worker", json.dumps(spec)]
        results[backend, compute_type] = run_worker("bench.bench_translate", worker_args, 600)
    reference = results["transformers", "float32"]
    rows = []
    for (backend, compute_type), res in results.items():
        for run, ref in zip(res["runs"], reference["runs"], strict=True):
            equal = sum(a == b for a, b in zip(run["outputs"], ref["outputs"], strict=True))
            rows.append(
                [
                    "greedy" if run["beams"] == 1 else f"beam {run['beams']}",
                    backend,
                    compute_type,
                    round(run["seconds"], 3),
                    round(args.n / run["seconds"], 1),
                    round(run["tokens"] / run["seconds"]),
                    f"{ref['seconds'] / run['seconds']:.2f}x",
                    f"{equal}/{args.n}",
                    round(res["load_s"], 2),
                    round(res["rss_after_load_mb"] - res["rss_before_load_mb"]),
                    round(res["peak_rss_mb"]),
                ]
            )
    headers = [
        "decoding",
        "backend",
        "compute",
        "seconds",
        "sent/s",
        "out tok/s",
        "vs transformers",
        "equal outputs",
        "load s",
        "load RSS MB",
        "peak RSS MB",
    ]
    return (
        f"\n{machine_line()}\n"
        f"backends: {describe(model_dir)} on CPU, {args.threads} thread(s), {args.n} "
        f"sentences, target={args.target}, best of {args.repeats}; one process per engine; "
        f"ctranslate2 conversion {convert_s:.1f} s (once, cached)\n" + format_table(headers, rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="sentences")
    parser.add_argument("--beams", type=int, default=4, help="beam size (config default: 4)")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both")
    parser.add_argument("--target", default="de")
    parser.add_argument("--model", type=Path, default=None, help="default: build tiny M2M100")
    parser.add_argument("--skip-naive", action="store_true", help="only the backends table")
    parser.add_argument("--no-backends", action="store_true", help="skip the backends table")
    parser.add_argument("--repeats", type=int, default=2, help="backends table: best of N")
    parser.add_argument("--engine-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_worker:
        print(json.dumps(engine_worker(json.loads(args.engine_worker))))
        return

    from clo.tiny_m2m100 import build_tiny_m2m100

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_translate_"))
    model_dir = args.model or build_tiny_m2m100(work / "tiny_m2m100")
    if not args.skip_naive:
        naive_and_stage(args, model_dir, work)
    if not args.no_backends:
        print(compare_backends(args, model_dir, work))
    sys.stdout.flush()


def naive_and_stage(args: argparse.Namespace, model_dir: Path, work: Path) -> None:
    """The naive loop, the batched Translator and the whole stage, cold and warm."""
    from clo.seed import SeedExample
    from clo.translate import (
        Decoding,
        FileTranslationCache,
        Translator,
        TranslatorConfig,
        translate_seed,
    )

    config = TranslatorConfig(
        model=str(model_dir),
        device="cpu",
        decoding=Decoding(num_beams=args.beams),
        batch_tokens=args.batch_tokens,
        quality_check="off",
    )
    translator = Translator(config)
    sentences = seed_sentences(args.n)
    translator.translate(sentences[:4], "en", args.target)  # warm-up (allocators, lazy init)

    naive_s, naive_out = naive(translator, sentences, args.target)
    calls_before = translator.model_calls
    start = time.perf_counter()
    batched_out = translator.translate(sentences, "en", args.target)
    batched_s = time.perf_counter() - start
    batched_calls = translator.model_calls - calls_before

    # full stage (split, cache lookups, restore) on the same sentences as 100 examples
    examples = [SeedExample(a, b) for a, b in zip(sentences[::2], sentences[1::2], strict=False)]
    cache = FileTranslationCache(work / "cache")
    cold = translate_seed(examples, args.target, translator, cache=cache).report
    warm = translate_seed(examples, args.target, translator, cache=cache).report

    n = len(sentences)
    # a random-weight model never emits </s>, so each output runs to its length cap, which is
    # per sentence in the naive loop and per batch here: compare up to the shorter one
    agree = sum(
        a.startswith(b) or b.startswith(a) for a, b in zip(naive_out, batched_out, strict=True)
    )
    rows = [
        ("naive loop (1 sentence/generate)", naive_s, n, n),
        ("batched Translator.translate", batched_s, n, batched_calls),
        (
            "translate_seed, cold cache",
            cold["seconds"],
            cold["segments_total"],
            cold["model_calls"],
        ),
        (
            "translate_seed, warm cache",
            warm["seconds"],
            warm["segments_total"],
            warm["model_calls"],
        ),
    ]
    print(
        f"\ntiny M2M100 on CPU, {args.threads} thread(s), beams={args.beams}, "
        f"batch_tokens={args.batch_tokens}, {n} seed sentences, target={args.target}"
    )
    print(f"{'path':36} {'seconds':>9} {'sent/s':>10} {'generate calls':>15} {'vs naive':>9}")
    for name, seconds, count, calls in rows:
        rate = count / seconds if seconds > 0 else float("inf")
        print(f"{name:36} {seconds:9.3f} {rate:10.1f} {calls:15d} {rate / (n / naive_s):8.1f}x")
    print(f"batched outputs agree with naive outputs (up to the length cap): {agree}/{n}")


if __name__ == "__main__":
    main()
