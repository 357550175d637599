"""Shipped evaluation prompt sets: the same hand-written prompts in several languages.

Each set is ``clo/data/eval_prompts_<code>.jsonl``, one ``{"id", "category", "prompt"}``
object per line. Every language holds the same prompts with the same ids, in the same
order, so answers can be compared prompt by prompt across languages. The prompts are kept
apart from every shipped seed and parallel set, so a model trained on those is not
evaluated on what it saw.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from clo.errors import CloError
from clo.languages import UnknownLanguageError, get_language

logger = logging.getLogger(__name__)

CATEGORIES: tuple[str, ...] = ("how-to", "explanation", "advice", "writing", "facts")

_DATA_PACKAGE = "clo"
_PREFIX = "eval_prompts_"
_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class EvalPrompt:
    """One evaluation prompt: an id shared across languages, its category and its text."""

    id: str
    category: str
    prompt: str


def _data_dir() -> Any:
    return resources.files(_DATA_PACKAGE).joinpath("data")


def eval_prompt_languages() -> list[str]:
    """Codes of the languages that ship an evaluation prompt set."""
    names = [entry.name for entry in _data_dir().iterdir()]
    return sorted(
        n[len(_PREFIX) : -len(_SUFFIX)]
        for n in names
        if n.startswith(_PREFIX) and n.endswith(_SUFFIX)
    )


def _available_text(available: list[str]) -> str:
    return ", ".join(available) or "none"


def _parse_record(record: Any, where: str) -> EvalPrompt:
    """One decoded line -> EvalPrompt; a malformed line is a packaging bug."""
    if not isinstance(record, dict):
        raise CloError(f"{where}: each line must be a JSON object")
    values: dict[str, str] = {}
    for key in ("id", "category", "prompt"):
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            raise CloError(f"{where}: field {key!r} must be a non-empty string")
        values[key] = value.strip()
    if values["category"] not in CATEGORIES:
        raise CloError(
            f"{where}: unknown category {values['category']!r} (expected one of "
            f"{', '.join(CATEGORIES)})"
        )
    return EvalPrompt(**values)


def load_eval_prompts(lang_code: str) -> list[EvalPrompt]:
    """The shipped evaluation prompts for `lang_code` (a code or name the registry knows)."""
    available = eval_prompt_languages()
    try:
        lang = get_language(lang_code)
    except UnknownLanguageError as exc:
        raise UnknownLanguageError(
            f"{exc}; evaluation prompt sets ship for: {_available_text(available)}"
        ) from exc
    if lang.code not in available:
        raise CloError(
            f"no evaluation prompt set ships for {lang.name} ({lang.code}); sets ship for: "
            f"{_available_text(available)}"
        )
    name = f"{_PREFIX}{lang.code}{_SUFFIX}"
    prompts: list[EvalPrompt] = []
    seen: set[str] = set()
    with _data_dir().joinpath(name).open("r", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{name} line {line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CloError(f"{where}: invalid JSON: {exc.msg}") from exc
            prompt = _parse_record(record, where)
            if prompt.id in seen:
                raise CloError(f"{where}: duplicate id {prompt.id!r}")
            seen.add(prompt.id)
            prompts.append(prompt)
    if not prompts:
        raise CloError(f"{name}: no prompts found")
    logger.debug("loaded %d evaluation prompts for %s", len(prompts), lang.code)
    return prompts


def eval_prompt_set_hash(prompts: Iterable[EvalPrompt]) -> str:
    """sha256 over a canonical JSON form of the prompts (order matters)."""
    canonical = json.dumps(
        [{"id": p.id, "category": p.category, "prompt": p.prompt} for p in prompts],
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
