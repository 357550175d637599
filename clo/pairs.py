"""Translated examples (quadruples) and the two CLO preference pairs each one yields."""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from clo.errors import CloError

logger = logging.getLogger(__name__)

Direction = Literal["en", "tgt"]
T = TypeVar("T")

_QUAD_FIELDS = ("x_en", "y_en", "x_tgt", "y_tgt")


@dataclass(frozen=True)
class Quadruple:
    """One seed example and its translation: (x_en, y_en, x_tgt, y_tgt) in METHOD.md."""

    x_en: str
    y_en: str
    x_tgt: str
    y_tgt: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quadruple:
        """Build from a mapping with the four fields (extra keys such as "id" are ignored)."""
        missing = [f for f in _QUAD_FIELDS if f not in data]
        if missing:
            raise CloError(f"quadruple is missing field(s): {', '.join(missing)}")
        bad = [f for f in _QUAD_FIELDS if not isinstance(data[f], str) or not data[f].strip()]
        if bad:
            raise CloError(f"quadruple field(s) must be non-empty strings: {', '.join(bad)}")
        return cls(**{f: data[f] for f in _QUAD_FIELDS})


@dataclass(frozen=True)
class PreferencePair:
    """A DPO pair. direction "en": English prompt keeps English; "tgt": target prompt transfers."""

    prompt: str
    chosen: str
    rejected: str
    direction: Direction


def preference_pairs(q: Quadruple) -> tuple[PreferencePair, PreferencePair]:
    """The two CLO pairs of one example: (English-input pair, target-input pair)."""
    en_pair = PreferencePair(prompt=q.x_en, chosen=q.y_en, rejected=q.y_tgt, direction="en")
    tgt_pair = PreferencePair(prompt=q.x_tgt, chosen=q.y_tgt, rejected=q.y_en, direction="tgt")
    return en_pair, tgt_pair


def nll_record(q: Quadruple, include_english: bool = False) -> tuple[tuple[str, str], ...]:
    """(prompt, response) sequences the NLL term trains on.

    Target-language only by default: METHOD.md's ablation shows English NLL brings the
    English bias back; `include_english=True` exists only for that ablation.
    """
    records: tuple[tuple[str, str], ...] = ((q.x_tgt, q.y_tgt),)
    if include_english:
        records += ((q.x_en, q.y_en),)
    return records


def split_heldout(
    items: Sequence[T],
    fraction: float | None = None,
    seed: int = 0,
    *,
    size: int | None = None,
) -> tuple[list[T], list[T]]:
    """Split into (train, heldout) deterministically for a given seed; both keep input order.

    Give either `fraction` (0 <= f < 1, rounded, at least one held out when f > 0) or an
    absolute `size`; neither means 10%. The train part is never empty.
    """
    n = len(items)
    if fraction is not None and size is not None:
        raise CloError("split_heldout: give heldout fraction or heldout size, not both")
    if size is None:
        frac = 0.1 if fraction is None else fraction
        if not 0.0 <= frac < 1.0:
            raise CloError(f"heldout fraction must be in [0, 1), got {frac}")
        size = max(1, round(n * frac)) if frac > 0 else 0
    if size < 0:
        raise CloError(f"heldout size must be >= 0, got {size}")
    if size >= n:
        raise CloError(
            f"too few examples to hold out {size}: got {n}, need at least {size + 1} "
            "so that training keeps one (use more data or a smaller heldout size)"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    heldout_idx = set(order[:size])
    train = [item for i, item in enumerate(items) if i not in heldout_idx]
    heldout = [item for i, item in enumerate(items) if i in heldout_idx]
    logger.debug("split %d examples into %d train / %d heldout", n, len(train), len(heldout))
    return train, heldout


def write_quadruples(path: Path, quads: Sequence[Quadruple]) -> None:
    """JSONL, one quadruple a line, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", encoding="utf-8") as out:
        for q in quads:
            out.write(json.dumps(q.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_quadruples(path: Path) -> list[Quadruple]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Quadruple.from_dict(json.loads(line)) for line in lines if line.strip()]
