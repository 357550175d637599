"""BELEBELE- and MMMLU-style multiple choice, scored zero-shot by option log-likelihood.

Each option is scored as a continuation of a plain-text prompt (no chat template, as
lm-evaluation-harness does): the sum of its token log-probs, and that sum divided by the
option's UTF-8 byte length (lm-eval's acc_norm, comparable across tokenizers). Items come
from the Hugging Face hub through `datasets` or from a local JSONL/JSON/parquet file in
the hub's schema; the package ships small hand-written fixtures for a few languages.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from clo.encoding import EncodedSequence, pad_token_id
from clo.errors import CloError
from clo.evaluate.report import BenchmarkResult
from clo.evaluate.scoring import score_encoded
from clo.languages import get_language

logger = logging.getLogger(__name__)

BELEBELE_HUB = "facebook/belebele"  # one config per FLORES-200 code, split "test"
MMMLU_HUB = "openai/MMMLU"  # one config per locale, split "test"; English is MMLU itself
MMLU_HUB = "cais/mmlu"
MMMLU_LOCALES = {
    "ar": "AR_XY",
    "bn": "BN_BD",
    "de": "DE_DE",
    "es": "ES_LA",
    "fr": "FR_FR",
    "hi": "HI_IN",
    "id": "ID_ID",
    "it": "IT_IT",
    "ja": "JA_JP",
    "ko": "KO_KR",
    "pt": "PT_BR",
    "sw": "SW_KE",
    "yo": "YO_NG",
    "zh": "ZH_CN",
}
LETTERS = "ABCD"


class BenchmarkDataError(CloError):
    """A benchmark file or row that does not follow the expected schema."""


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice question; `answer` indexes `options` (0-based)."""

    question: str
    options: tuple[str, ...]
    answer: int
    passage: str | None = None


@dataclass(frozen=True)
class ItemScore:
    logprobs: tuple[float, ...]
    byte_lengths: tuple[int, ...]
    answer: int

    @property
    def predicted(self) -> int:
        return max(range(len(self.logprobs)), key=lambda i: self.logprobs[i])

    @property
    def predicted_norm(self) -> int:
        return max(
            range(len(self.logprobs)), key=lambda i: self.logprobs[i] / max(self.byte_lengths[i], 1)
        )


# ---- schema parsing -----------------------------------------------------------------------


def _field(row: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in row or row[key] is None:
        raise BenchmarkDataError(f"{where}: missing field {key!r}")
    return row[key]


def _text(row: Mapping[str, Any], key: str, where: str) -> str:
    value = _field(row, key, where)
    if not isinstance(value, str | int | float) or not str(value).strip():
        raise BenchmarkDataError(f"{where}: field {key!r} must be non-empty text")
    return str(value)


def parse_belebele(row: Mapping[str, Any], where: str = "row") -> MCItem:
    """facebook/belebele: flores_passage, question, mc_answer1..4, correct_answer_num (1-4)."""
    options = tuple(_text(row, f"mc_answer{i}", where) for i in range(1, 5))
    raw = str(_field(row, "correct_answer_num", where)).strip()
    if raw not in ("1", "2", "3", "4"):
        raise BenchmarkDataError(f"{where}: correct_answer_num must be 1-4, got {raw!r}")
    return MCItem(
        question=_text(row, "question", where),
        options=options,
        answer=int(raw) - 1,
        passage=_text(row, "flores_passage", where),
    )


def parse_mmmlu(row: Mapping[str, Any], where: str = "row") -> MCItem:
    """openai/MMMLU (Question, A-D, Answer letter) or cais/mmlu (question, choices, answer)."""
    if "Question" in row:
        options = tuple(_text(row, letter, where) for letter in LETTERS)
        letter = str(_field(row, "Answer", where)).strip().upper()
        if letter not in LETTERS:
            raise BenchmarkDataError(f"{where}: Answer must be one of A-D, got {letter!r}")
        return MCItem(
            question=_text(row, "Question", where), options=options, answer=LETTERS.index(letter)
        )
    if "question" in row and "choices" in row:
        choices = _field(row, "choices", where)
        if not isinstance(choices, list) or len(choices) < 2:
            raise BenchmarkDataError(f"{where}: choices must be a list of at least two options")
        answer = _field(row, "answer", where)
        if not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise BenchmarkDataError(f"{where}: answer must index choices, got {answer!r}")
        return MCItem(
            question=_text(row, "question", where),
            options=tuple(str(c) for c in choices),
            answer=answer,
        )
    raise BenchmarkDataError(
        f"{where}: not MMMLU schema (Question, A, B, C, D, Answer) nor MMLU schema "
        "(question, choices, answer)"
    )


PARSERS: dict[str, Callable[[Mapping[str, Any], str], MCItem]] = {
    "belebele": parse_belebele,
    "mmmlu": parse_mmmlu,
}


# ---- sources ------------------------------------------------------------------------------


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a local .jsonl, .json (list of objects) or .parquet file."""
    p = Path(path)
    if not p.is_file():
        raise BenchmarkDataError(f"benchmark file {p} does not exist")
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_table(p).to_pylist())
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise BenchmarkDataError(f"{p}: a .json benchmark file must hold a list of rows")
        return rows
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise BenchmarkDataError(f"{p} line {line_no}: invalid JSON ({exc.msg})") from exc
    return rows


def parse_rows(benchmark: str, rows: Iterable[Mapping[str, Any]], source: str) -> list[MCItem]:
    parser = PARSERS[benchmark]
    return [parser(row, f"{source} row {i}") for i, row in enumerate(rows, start=1)]


def shipped_fixture(benchmark: str, lang: str) -> Path | None:
    """The small hand-written fixture shipped in clo/data, if one exists for the language."""
    path = resources.files("clo").joinpath("data", f"eval_{benchmark}_{lang}.jsonl")
    return Path(str(path)) if path.is_file() else None


def hub_location(benchmark: str, lang: str) -> tuple[str, str, str] | None:
    """(dataset, config, split) on the hub for a benchmark and language, or None."""
    language = get_language(lang)
    if benchmark == "belebele":
        return (BELEBELE_HUB, language.nllb_code, "test") if language.nllb_code else None
    if language.code == "en":
        return (MMLU_HUB, "all", "test")
    locale = MMMLU_LOCALES.get(language.code)
    return (MMMLU_HUB, locale, "test") if locale else None


def load_from_hub(benchmark: str, lang: str) -> tuple[list[MCItem], str]:
    location = hub_location(benchmark, lang)
    if location is None:
        raise BenchmarkDataError(f"{benchmark} has no {get_language(lang).name} split on the hub")
    import datasets

    name, config, split = location
    rows = datasets.load_dataset(name, config, split=split)
    source = f"hub:{name}/{config}/{split}"
    return parse_rows(benchmark, rows, source), source


def load_items(
    benchmark: str, lang: str, source: str = "auto", files: Mapping[str, str] | None = None
) -> tuple[list[MCItem], str]:
    """Items for one benchmark and language, and a description of where they came from.

    source "local": the file given in `files["<benchmark>:<lang>"]`, else the shipped
    fixture; "hub": `datasets.load_dataset`; "auto": hub, then local if the hub fails.
    """
    if benchmark not in PARSERS:
        raise BenchmarkDataError(f"unknown benchmark {benchmark!r}; use one of {list(PARSERS)}")
    code = get_language(lang).code
    given = (files or {}).get(f"{benchmark}:{code}")
    if given is not None:
        return parse_rows(benchmark, read_rows(given), given), f"file:{given}"
    if source in ("hub", "auto"):
        try:
            return load_from_hub(benchmark, code)
        except Exception as exc:  # the hub is often unreachable: fall back or report why
            if source == "hub":
                raise BenchmarkDataError(
                    f"could not load {benchmark} ({code}) from the hub: {exc}"
                ) from exc
            logger.info("hub load of %s/%s failed (%s); using local data", benchmark, code, exc)
    fixture = shipped_fixture(benchmark, code)
    if fixture is None:
        raise BenchmarkDataError(
            f"no local {benchmark} data for {get_language(code).name} ({code}): pass a file "
            f'in the hub schema via benchmark_files["{benchmark}:{code}"]'
        )
    return parse_rows(benchmark, read_rows(fixture), fixture.name), f"local:{fixture.name}"


# ---- scoring ------------------------------------------------------------------------------


def item_prompt(item: MCItem) -> str:
    """Zero-shot prompt: passage (BELEBELE), question, then "Answer:"."""
    parts = [f"Passage: {item.passage}"] if item.passage else []
    parts += [f"Question: {item.question}", "Answer:"]
    return "\n".join(parts)


def score_items(
    model: Any, tokenizer: Any, items: Sequence[MCItem], batch_size: int = 8, max_length: int = 2048
) -> list[ItemScore]:
    """Summed log-prob of every option (as " option") after each item's plain-text prompt."""
    sequences: list[EncodedSequence] = []
    for item in items:
        prompt_ids = list(tokenizer(item_prompt(item))["input_ids"])
        for option in item.options:
            option_ids = list(
                tokenizer(" " + option.strip(), add_special_tokens=False)["input_ids"]
            )
            # keep the option whole; cut the passage from the left if the item is too long
            prompt_part = prompt_ids[-max(1, max_length - len(option_ids)) :]
            sequences.append(EncodedSequence(tuple(prompt_part + option_ids), len(prompt_part)))
    scores = score_encoded(model, sequences, pad_token_id(tokenizer), batch_size)
    out: list[ItemScore] = []
    pos = 0
    for item in items:
        k = len(item.options)
        out.append(
            ItemScore(
                logprobs=tuple(s.logprob for s in scores[pos : pos + k]),
                byte_lengths=tuple(len((" " + o.strip()).encode("utf-8")) for o in item.options),
                answer=item.answer,
            )
        )
        pos += k
    return out


def benchmark_result(
    benchmark: str, lang: str, source: str, scores: Sequence[ItemScore]
) -> BenchmarkResult:
    n = len(scores)
    if n == 0:
        raise BenchmarkDataError(f"{benchmark} ({lang}) from {source} has no items")
    return BenchmarkResult(
        benchmark=benchmark,
        language=lang,
        source=source,
        n=n,
        accuracy=sum(s.predicted == s.answer for s in scores) / n,
        accuracy_norm=sum(s.predicted_norm == s.answer for s in scores) / n,
    )


def run_benchmark(
    model: Any,
    tokenizer: Any,
    benchmark: str,
    lang: str,
    source: str = "auto",
    files: Mapping[str, str] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
) -> BenchmarkResult:
    """Load, score and summarise one benchmark in one language."""
    return run_benchmark_scored(
        model, tokenizer, benchmark, lang, source, files, limit, batch_size
    )[0]


def run_benchmark_scored(
    model: Any,
    tokenizer: Any,
    benchmark: str,
    lang: str,
    source: str = "auto",
    files: Mapping[str, str] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
) -> tuple[BenchmarkResult, list[ItemScore]]:
    """run_benchmark, with every item's scores (to pair two models item by item)."""
    items, where = load_items(benchmark, lang, source, files)
    if limit is not None and limit < len(items):
        # hub splits are sorted by subject: a seeded sample, not the first rows, keeps the mix
        keep = sorted(random.Random(0).sample(range(len(items)), limit))
        items = [items[i] for i in keep]
        where += f" (sample of {limit}, seed 0)"
    scores = score_items(model, tokenizer, items, batch_size=batch_size)
    return benchmark_result(benchmark, get_language(lang).code, where, scores), scores
