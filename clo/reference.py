"""Reference log-probs: the frozen base model's scores of the four sequences, computed once.

The reference model of CLO is the base model itself, so its log-probs never change during
training. They are computed before the first update, in one no-grad pass with the SAME model
object (LoRA adapters are attached only afterwards), so no second model copy is ever held.
Results are cached on disk, keyed by a sha256 of everything that determines them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from clo.distributed_scorer import score_sequences
from clo.encoding import EncodedSequence, collate, encoding_fingerprint
from clo.packing import pack_examples, packed_logprobs
from clo.precision import autocast_for

logger = logging.getLogger(__name__)


def autocast_context(
    device: torch.device, precision: str | None = None, model: Any = None
) -> contextlib.AbstractContextManager[Any]:
    """The autocast of a run's precision (clo.precision.autocast_for; None: bf16 on CUDA,
    fp32 elsewhere unless `model` holds bf16 and fp32 weights side by side)."""
    return autocast_for(device, precision, model)


def autocast_name(device: torch.device, precision: str | None, model: Any = None) -> str:
    """ "bf16" or "fp32": what `autocast_context` runs the matmuls in (part of cache keys)."""
    with autocast_context(device, precision, model):
        return "bf16" if torch.is_autocast_enabled(device.type) else "fp32"


def model_identity(model: Any) -> dict[str, Any]:
    """Name, revision and architecture of the model, as recorded by from_pretrained."""
    cfg = getattr(model, "config", None)
    return {
        "name": getattr(cfg, "_name_or_path", None) or getattr(model, "name_or_path", None),
        "revision": getattr(cfg, "_commit_hash", None),
        "config": cfg.to_json_string(use_diff=False) if cfg is not None else None,
        "dtype": str(next(model.parameters()).dtype),
        "weights": weights_checksum(model),
    }


@torch.no_grad()
def weights_checksum(model: Any) -> str:
    """Cheap fingerprint of the weights (per-tensor sums), so a changed local model misses."""
    sums = torch.stack([p.detach().float().sum() for p in model.parameters()]).cpu()
    return hashlib.sha256(" ".join(f"{v:.6e}" for v in sums.tolist()).encode()).hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of the tokenizer's vocabulary/merges and chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = (
        backend.to_str()
        if backend is not None
        else json.dumps(sorted(tokenizer.get_vocab().items()))
    )
    return hashlib.sha256(
        (body + str(getattr(tokenizer, "chat_template", None))).encode()
    ).hexdigest()


def reference_key(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[tuple[EncodedSequence, ...]],
    extra: dict[str, Any] | None = None,
    precision: str | None = None,
) -> str:
    """Cache key: model (name, revision, config, dtype, weight sums), tokenizer, encoded data,
    and the precision the scores are computed in."""
    device = next(model.parameters()).device
    parts = {
        "model": model_identity(model),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        # token ids already encode the data, the template and the truncation lengths
        "encoded": encoding_fingerprint(encoded),
        "autocast": autocast_name(device, precision, model),
        "extra": extra or {},
        "version": 1,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@torch.no_grad()
def compute_logps(
    model: Any,
    encoded: Sequence[tuple[EncodedSequence, ...]],
    pad_id: int,
    batch_size: int = 8,
    chunk_tokens: int = 1024,
    precision: str | None = None,
    packed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs and token counts, both [N, 4], for every encoded example (no grad).

    Results do not depend on order, so the 4·N sequences are scored longest first in batches
    of similar length (4·batch_size sequences each): far less padding than batching examples
    as they come, and a batch too large for memory fails at once. `packed`: each prompt with
    both its responses in one row (clo.packing), as the training steps forward them.
    """
    if packed and encoded:
        return _compute_packed(model, encoded, batch_size, chunk_tokens, precision)
    device = next(model.parameters()).device
    width = len(encoded[0]) if encoded else 4
    flat = [seq for seqs in encoded for seq in seqs]
    order = sorted(range(len(flat)), key=lambda k: -len(flat[k].input_ids))
    logps = torch.zeros(len(flat), dtype=torch.float32)
    counts = torch.zeros(len(flat), dtype=torch.long)
    per_batch = batch_size * width
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), per_batch):
            ids = order[start : start + per_batch]
            batch = collate([flat[k] for k in ids], pad_id).to(device)
            with autocast_context(device, precision, model):
                lp, n = score_sequences(
                    model, batch.input_ids, batch.attention_mask, batch.response_mask, chunk_tokens
                )
            index = torch.tensor(ids)
            logps[index] = lp.float().cpu()
            counts[index] = n.cpu()
    finally:
        model.train(was_training)
    return logps.view(-1, width), counts.view(-1, width)


@torch.no_grad()
def _compute_packed(
    model: Any,
    encoded: Sequence[tuple[EncodedSequence, ...]],
    batch_size: int,
    chunk_tokens: int,
    precision: str | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """compute_logps over packed rows (two per example), longest first."""
    device = next(model.parameters()).device
    rows = [row for seqs in encoded for row in pack_examples(list(seqs))]
    order = sorted(range(len(rows)), key=lambda k: -len(rows[k].input_ids))
    logps = torch.zeros(len(rows), 2, dtype=torch.float32)
    counts = torch.zeros(len(rows), 2, dtype=torch.long)
    per_batch = 2 * batch_size  # the rows of batch_size examples
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), per_batch):
            ids = order[start : start + per_batch]
            with autocast_context(device, precision, model):
                lp, n = packed_logprobs(model, [rows[k] for k in ids], chunk_tokens)
            index = torch.tensor(ids)
            logps[index] = lp.float().cpu().view(-1, 2)
            counts[index] = n.cpu().view(-1, 2)
    finally:
        model.train(was_training)
    return logps.view(len(encoded), -1), counts.view(len(encoded), -1)


def reference_cache_path(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[tuple[EncodedSequence, ...]],
    cache_dir: Path | None,
    precision: str | None = None,
    packed: bool = False,
) -> Path | None:
    """Where the reference log-probs of this model and data are cached (None: no cache).

    Keyed by precision (bf16 and fp32 scores differ); packed scores only by their own key,
    so the step-0 margin of a packed run is exactly 0 (unpacked keys are unchanged).
    """
    if cache_dir is None:
        return None
    # packed scores since live-block attention (clo.packed_attention) round differently
    # from the masked call's: their own key, so old caches are not mixed in
    extra = {"packed": True, "attention": "live_blocks"} if packed else None
    key = reference_key(model, tokenizer, encoded, extra, precision)
    return Path(cache_dir) / f"reference-{key}.safetensors"


def read_cached_reference(path: Path | None, n_examples: int) -> torch.Tensor | None:
    """The cached [n_examples, 4] log-probs at `path`, or None when absent or of other shape."""
    if path is None or not path.exists():
        return None
    cached = load_file(str(path))["logps"]
    if cached.shape != (n_examples, 4):
        return None
    logger.info("reference log-probs loaded from cache %s", path.name)
    return cached


def write_cached_reference(path: Path, logps: torch.Tensor) -> None:
    """Write the cache file atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex}.tmp")
    save_file({"logps": logps.contiguous()}, str(tmp))
    os.replace(tmp, path)


def reference_logps(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[tuple[EncodedSequence, ...]],
    pad_id: int,
    *,
    cache_dir: Path | None = None,
    batch_size: int = 8,
    chunk_tokens: int = 1024,
    precision: str | None = None,
    packed: bool = False,
) -> torch.Tensor:
    """Reference log-probs [N, 4], read from the cache when the key matches."""
    path = reference_cache_path(model, tokenizer, encoded, cache_dir, precision, packed)
    cached = read_cached_reference(path, len(encoded))
    if cached is not None:
        return cached
    logps, _ = compute_logps(model, encoded, pad_id, batch_size, chunk_tokens, precision, packed)
    if path is not None:
        write_cached_reference(path, logps)
    return logps
