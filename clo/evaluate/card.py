"""The bundle's model card (README.md), rewritten at packaging time from the evaluation.

Export happens before evaluation, so the card the export wrote knows neither the headline
numbers nor, on a worker, the base model's public name (it was given a local path). This
rewrites it: `language:` front matter (target language, then English), `base_model:` the
name the job used (a hub id or catalog name), and an evaluation section with base |
trained | delta and their 95% intervals.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from clo.card import model_card, publish_adapter_config, published_base
from clo.config import TrainConfig
from clo.languages import get_language
from clo.resolve import ResolvedJob

logger = logging.getLogger(__name__)

# (versus_base metric, label with {lang} for the target language name, is a rate)
HEADLINE: tuple[tuple[str, str, bool], ...] = (
    ("usable_rate_target", "usable answers in {lang} to {lang} prompts", True),
    ("usable_rate_english", "usable answers in English to English prompts", True),
    ("pass_rate_target", "LCB line-level pass rate, {lang} prompts", True),
    ("pass_rate_english", "LCB line-level pass rate, English prompts", True),
    ("perplexity_target", "perplexity of held-out {lang} responses", False),
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _interval(entry: dict[str, Any], key: str, rate: bool) -> str:
    iv = entry.get(key) or {}
    if iv.get("low") is None:
        return ""
    if rate:
        return f" [{100 * iv['low']:.1f}, {100 * iv['high']:.1f}]"
    return f" [{iv['low']:.3g}, {iv['high']:.3g}]"


def _delta(entry: dict[str, Any], rate: bool) -> str:
    delta, low, high = entry.get("delta"), entry.get("delta_low"), entry.get("delta_high")
    if delta is None:
        return "-"
    scale, fmt = (100.0, "+.1f") if rate else (1.0, "+.3g")
    text = f"{scale * delta:{fmt}}" + (" pts" if rate else "")
    if low is None or high is None:
        return text
    return f"{text} [{scale * low:{fmt}}, {scale * high:{fmt}}]"


def _value(entry: dict[str, Any], side: str, rate: bool) -> str:
    value = entry.get(side)
    if value is None:
        return "-"
    text = _pct(value) if rate else f"{value:.3g}"
    return text + _interval(entry, f"{side}_interval", rate)


def evaluation_section(evaluation: dict[str, Any] | None, target_name: str) -> list[str]:
    """Markdown lines of the card's evaluation section (empty without an evaluation)."""
    if not evaluation:
        return []
    versus = evaluation.get("versus_base") or {}
    metrics = versus.get("metrics") or {}
    sources = ", ".join(evaluation.get("prompt_sources") or []) or "held-out examples"
    tokens = (evaluation.get("config") or {}).get("max_new_tokens")
    lines = [
        "## Evaluation",
        "",
        f"Greedy answers ({tokens} new tokens) of the base model and of this model to the same "
        f"prompts ({sources}). A usable answer is non-empty, in the expected language, not an "
        "echo of the prompt and not a repetition loop. Brackets: 95% intervals (Wilson for "
        "rates, paired bootstrap over prompts for differences).",
        "",
    ]
    if metrics:
        lines += ["| metric | base | trained | Δ |", "|---|---|---|---|"]
        for name, label, rate in HEADLINE:
            entry = metrics.get(name)
            if entry:
                lines.append(
                    f"| {label.format(lang=target_name)} | {_value(entry, 'base', rate)} | "
                    f"{_value(entry, 'trained', rate)} | {_delta(entry, rate)} |"
                )
        verdict = (metrics.get("usable_rate_target") or {}).get("verdict")
        if verdict:
            lines += ["", f"Usable {target_name} answers: {verdict}."]
    else:
        tgt = ((evaluation.get("language") or {}).get("target_prompts")) or {}
        lines.append(f"- usable answers in {target_name}: {_pct(tgt.get('usable_rate'))}")
    return lines + [""]


def _front_matter(card: str, languages: list[str], base_name: str) -> str:
    """The card with `language:` added and `base_model:` set in its front matter."""
    lines = card.split("\n")
    if not lines or lines[0] != "---" or "---" not in lines[1:]:
        lines = ["---", "---", *lines]
    end = lines.index("---", 1)
    head: list[str] = []
    in_language = False
    for line in lines[1:end]:
        # drop an old language block (its "- code" items) and the old base_model line
        in_language = line.startswith("language:") or (in_language and line.startswith("- "))
        if not in_language and not line.startswith("base_model:"):
            head.append(line)
    head = [f"base_model: {base_name}", "language:", *(f"- {c}" for c in languages), *head]
    return "\n".join(["---", *head, *lines[end:]])


def _insert_before(card: str, heading: str, section: list[str]) -> str:
    if not section:
        return card
    block = "\n".join(section) + "\n"
    at = card.find(f"\n{heading}\n")
    return card + "\n" + block if at < 0 else card[: at + 1] + block + card[at + 1 :]


def render_model_card(
    bundle_dir: Path, resolved: ResolvedJob, evaluation: dict[str, Any] | None
) -> str:
    """The card text for the bundle in `bundle_dir` (the export's card, regenerated)."""
    base = resolved.base_model
    target = get_language(resolved.spec.target_language)
    merged = not (bundle_dir / "adapter_config.json").is_file()
    card: str | None = None
    try:
        config = TrainConfig.model_validate_json(
            (bundle_dir / "training_config.json").read_text(encoding="utf-8")
        )
        meta = json.loads((bundle_dir / "clo_metadata.json").read_text(encoding="utf-8"))
        card = model_card(
            config,
            base.name,
            base.revision,
            str(meta.get("data_hash")),
            dict(meta.get("metrics") or {}),
            merged=merged,
            weights_dtype=meta.get("export_dtype"),
            base_source=base.source,
        )
    except (OSError, ValueError) as exc:  # keep the export's own card, with fixed metadata
        logger.warning("model card not regenerated (%s); amending the export's card", exc)
    if card is None:
        readme = bundle_dir / "README.md"
        card = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    card = _front_matter(
        card, [target.code, "en"], published_base(base.name, base.source) or base.name
    )
    return _insert_before(card, "## Load", evaluation_section(evaluation, target.name))


def write_model_card(
    bundle_dir: Path, resolved: ResolvedJob, evaluation: dict[str, Any] | None
) -> None:
    """(Re)write README.md in the bundle folder; call before its SHA256SUMS is written."""
    path = Path(bundle_dir) / "README.md"
    text = render_model_card(Path(bundle_dir), resolved, evaluation)
    base = resolved.base_model
    publish_adapter_config(Path(bundle_dir), published_base(base.name, base.source), base.revision)
    # a new file renamed over the old: the bundle's files are hard links to the export's
    tmp = path.with_name(f".README.md.{uuid.uuid4().hex}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
