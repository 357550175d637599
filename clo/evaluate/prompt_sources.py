"""Where an evaluation's prompts come from: the shipped set of the target language, and the
job's own held-out examples, each asked in the target language and in English."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from clo.errors import CloError
from clo.evaluate.prompt_sets import eval_prompt_languages, eval_prompt_set_hash, load_eval_prompts
from clo.pairs import Quadruple


@dataclass(frozen=True)
class PromptSource:
    """One source of prompts: the same prompts in the target language and in English."""

    name: str  # e.g. "shipped:de@1a2b3c4d5e6f" or "heldout:16"
    kind: str  # "shipped" | "heldout"
    target: tuple[str, ...]
    english: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.target) != len(self.english) or not self.target:
            raise CloError(f"prompt source {self.name}: needs as many target as English prompts")

    @property
    def digest(self) -> str:
        """sha256 over the prompts in both languages, in order (what a base cache key uses)."""
        canonical = json.dumps(
            {"target": list(self.target), "english": list(self.english)},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def shipped_source(target_code: str, limit: int) -> PromptSource | None:
    """The first `limit` shipped prompts of the target language with their English twins.

    None when no set ships for the language or `limit` is 0.
    """
    if limit <= 0 or target_code not in eval_prompt_languages():
        return None
    target = load_eval_prompts(target_code)[:limit]
    english = {p.id: p for p in load_eval_prompts("en")}
    missing = [p.id for p in target if p.id not in english]
    if missing:
        raise CloError(f"shipped English prompts lack ids {missing[:3]} of the {target_code} set")
    twins = [english[p.id] for p in target]
    digest = eval_prompt_set_hash([*target, *twins])
    return PromptSource(
        name=f"shipped:{target_code}@{digest[:12]}",
        kind="shipped",
        target=tuple(p.prompt for p in target),
        english=tuple(p.prompt for p in twins),
    )


def heldout_source(heldout: Sequence[Quadruple]) -> PromptSource:
    """The held-out examples' prompts (x_tgt and x_en)."""
    return PromptSource(
        name=f"heldout:{len(heldout)}",
        kind="heldout",
        target=tuple(q.x_tgt for q in heldout),
        english=tuple(q.x_en for q in heldout),
    )


def evaluation_sources(
    target_code: str, heldout: Sequence[Quadruple], limit: int
) -> list[PromptSource]:
    """The held-out examples, then the shipped set (when one ships and `limit` > 0).

    Held-out first: their answers keep the positions (`index`) and samples they had before
    schema 1.2, and the judge's prompts are the first ones.
    """
    shipped = shipped_source(target_code, limit)
    return [heldout_source(heldout)] + ([shipped] if shipped else [])
