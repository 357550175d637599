"""The paper's English seed set: top-ranked single-turn conversations from OpenAssistant oasst1.

Selection (METHOD.md, "Data"):

- prompt: a root message (``role == "prompter"``, ``parent_id`` null) with ``lang == "en"``;
- reply: a direct child of that prompt with ``role == "assistant"`` and ``rank == 0`` (the
  best-ranked reply). Replies without a rank (oasst1 ranks only siblings that were
  compared) are not taken. "Single-turn" means exactly this prompt + reply pair; deeper
  turns of the tree are ignored.
- rows that are ``deleted``, have ``review_result`` false, or are ``synthetic`` are skipped,
  for the prompt and for the reply; an English prompt whose reply is in another language
  is skipped too.

Order, "highest quality first": by the reply's ``quality`` label (the mean of the
reviewers' 0..1 quality votes in oasst1's ``labels`` column) descending, replies without
one last; ties broken by the prompt's own ``quality`` label descending, then by the
prompt's ``message_id`` ascending, so the order is fully deterministic. A prompt text
that already appeared higher up (oasst1 has a few duplicates) is skipped.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from clo.errors import CloError
from clo.seed import SeedExample

logger = logging.getLogger(__name__)

HUB_DATASET = "OpenAssistant/oasst1"


def _label(row: dict[str, Any], name: str) -> float | None:
    """A named value from oasst1's ``labels`` column ({"name": [...], "value": [...]})."""
    labels = row.get("labels")
    if not isinstance(labels, dict):
        return None
    for label_name, value in zip(labels.get("name") or [], labels.get("value") or [], strict=False):
        if label_name == name and isinstance(value, int | float) and not math.isnan(value):
            return float(value)
    return None


def _usable(row: dict[str, Any]) -> bool:
    text = row.get("text")
    return (
        not row.get("deleted")
        and row.get("review_result") is not False
        and not row.get("synthetic")
        and isinstance(text, str)
        and bool(text.strip())
    )


def _is_root(row: dict[str, Any]) -> bool:
    return row.get("role") == "prompter" and row.get("parent_id") is None


def _quality_key(row: dict[str, Any]) -> tuple[int, float]:
    """Sorts rows with a higher quality label first and rows without one last."""
    quality = _label(row, "quality")
    return (1, 0.0) if quality is None else (0, -quality)


def select_top_single_turn(rows: Iterable[dict[str, Any]], n: int) -> list[SeedExample]:
    """The `n` best English single-turn (prompt, rank-0 reply) pairs of oasst1 message rows."""
    if n < 1:
        raise CloError(f"number of oasst1 examples must be >= 1, got {n}")
    prompts: dict[str, dict[str, Any]] = {}
    replies: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if not _usable(row):
            continue
        if _is_root(row) and row.get("lang") == "en":
            prompts[str(row["message_id"])] = row
        elif row.get("role") == "assistant" and row.get("rank") == 0:
            if row.get("lang", "en") == "en" and row.get("parent_id") is not None:
                replies.setdefault(str(row["parent_id"]), []).append(row)

    pairs = []
    for prompt_id, prompt in prompts.items():
        candidates = replies.get(prompt_id)
        if not candidates:
            continue
        # oasst1 has one rank-0 reply per prompt; if an export has several, take the best.
        best = min(candidates, key=lambda r: (*_quality_key(r), str(r.get("message_id"))))
        pairs.append((prompt, best))
    pairs.sort(
        key=lambda pr: (*_quality_key(pr[1]), *_quality_key(pr[0]), str(pr[0]["message_id"]))
    )

    selected: list[SeedExample] = []
    seen: set[str] = set()
    for prompt, reply in pairs:
        key = " ".join(prompt["text"].split()).lower()
        if key in seen:
            continue
        seen.add(key)
        selected.append(SeedExample(prompt=prompt["text"].strip(), response=reply["text"].strip()))
        if len(selected) == n:
            break
    if len(selected) < n:
        logger.warning("oasst1 selection: asked for %d examples, only %d qualify", n, len(selected))
    return selected


# ---- reading exports -------------------------------------------------------------------


def _flatten_tree(message: dict[str, Any], parent_id: str | None) -> Iterator[dict[str, Any]]:
    """Messages of a nested tree export (each message with a ``replies`` list), flattened."""
    row = {k: v for k, v in message.items() if k != "replies"}
    row.setdefault("parent_id", parent_id)
    yield row
    for child in message.get("replies") or []:
        yield from _flatten_tree(child, row.get("message_id"))


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CloError(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from exc
            if isinstance(obj, dict) and isinstance(obj.get("prompt"), dict):
                yield from _flatten_tree(obj["prompt"], None)  # trees export
            elif isinstance(obj, dict):
                yield obj
            else:
                raise CloError(f"{path}: line {line_no} is not a JSON object")


def _iter_parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def iter_export(path: str | Path) -> Iterator[dict[str, Any]]:
    """Message rows of a local oasst1 export: .jsonl[.gz] (messages or trees), .parquet,
    a folder of parquet files, or a `datasets` save_to_disk folder (its train split)."""
    p = Path(path)
    if not p.exists():
        raise CloError(f"oasst1 export not found: {p}")
    if p.is_dir():
        if (p / "dataset_dict.json").exists() or (p / "dataset_info.json").exists():
            import datasets

            loaded = datasets.load_from_disk(str(p))
            split = loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
            yield from split
            return
        files = sorted(p.glob("*train*.parquet")) or sorted(p.glob("*.parquet"))
        if not files:
            raise CloError(f"{p}: no .parquet files and not a datasets save_to_disk folder")
        for f in files:
            yield from _iter_parquet(f)
        return
    suffixes = "".join(p.suffixes[-2:])
    if p.suffix == ".parquet":
        yield from _iter_parquet(p)
    elif p.suffix in (".jsonl", ".json") or suffixes in (".jsonl.gz", ".json.gz"):
        yield from _iter_jsonl(p)
    else:
        raise CloError(f"{p}: unsupported oasst1 export; use .jsonl, .jsonl.gz or .parquet")


def _load_from_hub(cache_dir: str | None) -> Iterable[dict[str, Any]]:
    try:
        import datasets

        rows: Iterable[dict[str, Any]] = datasets.load_dataset(
            HUB_DATASET, split="train", cache_dir=cache_dir
        )
        return rows
    except Exception as exc:  # offline, hub down, no cache: all need the same fix
        raise CloError(
            f"could not load {HUB_DATASET} from the Hugging Face Hub "
            f"({type(exc).__name__}: {exc}). Without network access, download the oasst1 "
            "export (e.g. its train parquet file) once and pass it with --oasst-path PATH "
            "(load_oasst1(n, path=PATH))."
        ) from exc


def load_oasst1(
    n: int, path: str | Path | None = None, cache_dir: str | None = None
) -> list[SeedExample]:
    """The paper's top-`n` oasst1 seed examples, from a local export or the Hub."""
    rows = iter_export(path) if path is not None else _load_from_hub(cache_dir)
    examples = select_top_single_turn(rows, n)
    logger.info("selected %d oasst1 examples from %s", len(examples), path or HUB_DATASET)
    return examples
