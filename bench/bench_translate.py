"""Translation throughput: our batched Translator vs a naive one-text-at-a-time loop.

Same tiny M2M100 (random weights, built locally), same CPU, same sentences, same decoding
(beam size and per-sentence length cap); then the full stage cold and with a warm cache.

    python bench/bench_translate.py [--n 200] [--beams 4] [--threads 1] [--model DIR]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="sentences")
    parser.add_argument("--beams", type=int, default=4, help="beam size (config default: 4)")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both")
    parser.add_argument("--target", default="de")
    parser.add_argument("--model", type=Path, default=None, help="default: build tiny M2M100")
    args = parser.parse_args()

    from clo.seed import SeedExample
    from clo.tiny_m2m100 import build_tiny_m2m100
    from clo.translate import (
        Decoding,
        FileTranslationCache,
        Translator,
        TranslatorConfig,
        translate_seed,
    )

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_translate_"))
    model_dir = args.model or build_tiny_m2m100(work / "tiny_m2m100")
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
