"""English seed data: JSONL loading with line-by-line validation, and the built-in data sets.

Accepted line formats (one JSON object per line, blank lines skipped, unknown keys ignored):

- ``{"prompt": "...", "response": "..."}``
- OpenAI chat style ``{"messages": [{"role": "user", "content": "..."},
  {"role": "assistant", "content": "..."}]}``. One leading ``system`` message is allowed
  and ignored: CLO pairs are (prompt, response), and a system prompt would not be
  translated with them. ``content`` may be a string or a list of ``{"type": "text",
  "text": ...}`` parts (joined). More than one user/assistant turn is rejected.

Parallel files (data the user translated already) add ``prompt_translated`` and
``response_translated`` to the prompt/response form, or use the quadruple field names
``x_en``, ``y_en``, ``x_tgt``, ``y_tgt`` of the built-in files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from clo.errors import CloError
from clo.languages import get_language
from clo.pairs import Quadruple

logger = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 50
_DATA_PACKAGE = "clo"
_BUILTIN_SEED = "builtin_seed.jsonl"
_PARALLEL_PREFIX = "builtin_parallel_"

T = TypeVar("T")


@dataclass(frozen=True)
class SeedExample:
    """One single-turn English (prompt, response) example."""

    prompt: str
    response: str


class LineError(NamedTuple):
    """A problem on one line: 1-based line number, the offending field (None: whole line)."""

    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field {self.field!r}" if self.field else "")
        return f"{where}: {self.message}"


class SeedDataError(CloError):
    """A seed/parallel data file with invalid lines; `errors` lists them (capped)."""

    def __init__(self, source: str, errors: list[LineError], error_count: int | None = None):
        self.errors = errors
        self.error_count = len(errors) if error_count is None else error_count
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (and {self.error_count - 5} more)" if self.error_count > 5 else ""
        super().__init__(f"{source}: {self.error_count} invalid line(s): {shown}{more}")


@dataclass
class JsonlReport:
    """Result of validating a JSONL stream: valid example count and the errors found."""

    count: int = 0
    errors: list[LineError] = field(default_factory=list)
    error_count: int = 0  # all errors, including those beyond the reported cap

    @property
    def ok(self) -> bool:
        return self.error_count == 0 and self.count > 0


class _RecordError(Exception):
    """Raised while parsing one record; carries the field name."""

    def __init__(self, field_name: str | None, message: str):
        super().__init__(message)
        self.field_name = field_name
        self.message = message


# ---- parsing one record -------------------------------------------------------------


def _text(record: dict[str, Any], key: str) -> str:
    if key not in record:
        raise _RecordError(key, "missing")
    value = record[key]
    if not isinstance(value, str):
        raise _RecordError(key, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise _RecordError(key, "must not be empty")
    return value.strip()


def _message_content(message: dict[str, Any], where: str) -> str:
    content = message.get("content")
    if isinstance(content, list):  # OpenAI content parts
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise _RecordError(f"{where}.content", "only text content parts are supported")
            if not isinstance(part.get("text"), str):
                raise _RecordError(f"{where}.content", "text part must have a string 'text'")
            texts.append(part["text"])
        content = "".join(texts)
    if not isinstance(content, str):
        raise _RecordError(f"{where}.content", "must be a string or a list of text parts")
    if not content.strip():
        raise _RecordError(f"{where}.content", "must not be empty")
    return content.strip()


def _from_messages(messages: Any) -> SeedExample:
    if not isinstance(messages, list):
        raise _RecordError("messages", "must be a list of {role, content} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _RecordError(f"messages[{i}].role", "each message needs a string 'role'")
    start = 1 if messages and messages[0]["role"] == "system" else 0
    turns = messages[start:]
    if len(turns) > 2:
        raise _RecordError(
            "messages",
            "multi-turn conversations are not supported: expected one user message "
            f"followed by one assistant message, got {len(turns)} messages",
        )
    expected = ("user", "assistant")
    for offset, role in enumerate(expected):
        i = start + offset
        if offset >= len(turns):
            raise _RecordError("messages", f"missing the {role} message")
        if turns[offset]["role"] != role:
            raise _RecordError(
                f"messages[{i}].role", f"expected {role!r}, got {turns[offset]['role']!r}"
            )
    return SeedExample(
        prompt=_message_content(turns[0], f"messages[{start}]"),
        response=_message_content(turns[1], f"messages[{start + 1}]"),
    )


def parse_seed_record(record: Any) -> SeedExample:
    """One decoded JSON line -> SeedExample (raises _RecordError with the field)."""
    if not isinstance(record, dict):
        raise _RecordError(None, "each line must be a JSON object")
    if "messages" in record:
        if "prompt" in record or "response" in record:
            raise _RecordError("messages", "give either prompt/response or messages, not both")
        return _from_messages(record["messages"])
    if "prompt" not in record and "response" not in record:
        raise _RecordError(
            "prompt", "missing: each line needs 'prompt' and 'response', or 'messages'"
        )
    return SeedExample(prompt=_text(record, "prompt"), response=_text(record, "response"))


def parse_parallel_record(record: Any) -> Quadruple:
    """One decoded JSON line of a parallel file -> Quadruple."""
    if not isinstance(record, dict):
        raise _RecordError(None, "each line must be a JSON object")
    if "x_en" in record:
        keys = ("x_en", "y_en", "x_tgt", "y_tgt")
    else:
        keys = ("prompt", "response", "prompt_translated", "response_translated")
    texts = [_text(record, k) for k in keys]
    return Quadruple(*texts)


# ---- parsing a stream of lines --------------------------------------------------------


def _parse_lines(
    lines: Iterable[bytes | str],
    parse: Callable[[Any], T],
    max_errors: int = MAX_REPORTED_ERRORS,
    keep: bool = True,
) -> tuple[list[T], JsonlReport]:
    """Parse every line, collecting up to `max_errors` errors (all are counted).

    With keep=False the parsed items are only counted, so a large upload costs no memory.
    """
    items: list[T] = []
    report = JsonlReport()

    def fail(line_no: int, field_name: str | None, message: str) -> None:
        report.error_count += 1
        if len(report.errors) < max_errors:
            report.errors.append(LineError(line_no, field_name, message))

    for line_no, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                fail(line_no, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
                continue
        text = raw.lstrip("\ufeff") if line_no == 1 else raw
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            fail(line_no, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except RecursionError:
            # json's decoder recurses per level: `[[[[...` a few thousand deep is a crafted line,
            # not a seed example, and must be a line error rather than an unhandled 500.
            fail(line_no, None, "invalid JSON: nested too deeply")
            continue
        try:
            item = parse(record)
        except _RecordError as exc:
            fail(line_no, exc.field_name, exc.message)
            continue
        report.count += 1
        if keep:
            items.append(item)
    return items, report


def validate_jsonl_lines(
    lines: Iterable[bytes | str], max_errors: int = MAX_REPORTED_ERRORS
) -> JsonlReport:
    """Validate a stream of seed JSONL lines (e.g. an upload) without keeping the examples."""
    _, report = _parse_lines(lines, parse_seed_record, max_errors, keep=False)
    return report


def parse_jsonl_lines(lines: Iterable[bytes | str], source: str = "<lines>") -> list[SeedExample]:
    """Parse seed JSONL lines; raise SeedDataError listing every bad line (capped)."""
    examples, report = _parse_lines(lines, parse_seed_record)
    if report.error_count:
        raise SeedDataError(source, report.errors, report.error_count)
    if not examples:
        raise SeedDataError(source, [LineError(0, None, "no examples found (file is empty)")])
    return examples


def _open_lines(path: str | Path) -> tuple[Path, list[bytes]]:
    p = Path(path)
    if not p.is_file():
        raise CloError(f"seed data file not found: {p}")
    with p.open("rb") as fh:
        return p, fh.readlines()


def load_jsonl(path: str | Path) -> list[SeedExample]:
    """Load an English seed JSONL file (prompt/response or OpenAI messages per line)."""
    p, lines = _open_lines(path)
    examples = parse_jsonl_lines(lines, source=str(p))
    logger.info("loaded %d seed examples from %s", len(examples), p)
    return examples


def load_parallel_jsonl(path: str | Path) -> list[Quadruple]:
    """Load a JSONL of already translated examples (prompt/response + *_translated)."""
    p, lines = _open_lines(path)
    quads, report = _parse_lines(lines, parse_parallel_record)
    if report.error_count:
        raise SeedDataError(str(p), report.errors, report.error_count)
    if not quads:
        raise SeedDataError(str(p), [LineError(0, None, "no examples found (file is empty)")])
    return quads


def seed_hash(examples: Iterable[SeedExample]) -> str:
    """sha256 over a canonical JSON form of the examples (order matters)."""
    canonical = json.dumps(
        [{"prompt": e.prompt, "response": e.response} for e in examples],
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ---- built-in data ---------------------------------------------------------------------


def _data_file(name: str) -> Any:
    return resources.files(_DATA_PACKAGE).joinpath("data", name)


def builtin_seed() -> list[SeedExample]:
    """The shipped English seed set (hand-written, for demos and tests)."""
    with _data_file(_BUILTIN_SEED).open("rb") as fh:
        return parse_jsonl_lines(fh.readlines(), source=_BUILTIN_SEED)


@lru_cache(maxsize=1)
def builtin_seed_size() -> int:
    """Examples in the shipped English seed set (read once per process)."""
    return len(builtin_seed())


def builtin_parallel_languages() -> list[str]:
    """Codes of the languages that ship hand-written parallel data."""
    data_dir = resources.files(_DATA_PACKAGE).joinpath("data")
    names = [entry.name for entry in data_dir.iterdir()]
    return sorted(
        n[len(_PARALLEL_PREFIX) : -len(".jsonl")]
        for n in names
        if n.startswith(_PARALLEL_PREFIX) and n.endswith(".jsonl")
    )


def builtin_parallel(lang_code: str) -> list[Quadruple]:
    """Hand-written translations of part of the built-in seed into `lang_code`."""
    lang = get_language(lang_code)
    available = builtin_parallel_languages()
    if lang.code not in available:
        raise CloError(
            f"no built-in parallel data for {lang.name} ({lang.code}); it ships for: "
            f"{', '.join(available) or 'none'}. Translate the seed with a translation model, "
            "or pass your own JSONL with prompt_translated/response_translated fields."
        )
    name = f"{_PARALLEL_PREFIX}{lang.code}.jsonl"
    with _data_file(name).open("rb") as fh:
        quads, report = _parse_lines(fh.readlines(), parse_parallel_record)
    if report.error_count:  # a packaging bug, not a user error
        raise SeedDataError(name, report.errors, report.error_count)
    return quads
