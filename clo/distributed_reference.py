"""The reference pass over N ranks: each scores its share of the examples once.

Every rank reads the cache; only when all of them find it is it used (one rank missing it,
say written by another job meanwhile, would otherwise leave the others waiting in a gather).
Otherwise rank r scores its contiguous share with the untouched base model (no collectives
inside, so shares may differ in size), the shares are gathered in rank order into the same
[N, 4] tensor one process computes, and rank 0 alone writes the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from clo.distributed import Ranks, all_agree, barrier, gather_to_all, shard_bounds
from clo.encoding import EncodedSequence
from clo.reference import (
    compute_logps,
    read_cached_reference,
    reference_cache_path,
    write_cached_reference,
)

logger = logging.getLogger(__name__)


def sharded_reference_logps(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[tuple[EncodedSequence, ...]],
    pad_id: int,
    ranks: Ranks,
    *,
    cache_dir: Path | None = None,
    batch_size: int = 8,
    chunk_tokens: int = 1024,
    precision: str | None = None,
) -> torch.Tensor:
    """Reference log-probs [N, 4] on every rank; each example scored by one rank only."""
    path = reference_cache_path(model, tokenizer, encoded, cache_dir, precision)
    cached = read_cached_reference(path, len(encoded))
    if all_agree(cached is not None):
        assert cached is not None
        return cached
    start, end = shard_bounds(len(encoded), ranks.rank, ranks.world_size)
    local, _ = compute_logps(
        model, encoded[start:end], pad_id, batch_size, chunk_tokens, precision=precision
    )
    logger.info("rank %d scored reference examples [%d, %d)", ranks.rank, start, end)
    logps = torch.cat(gather_to_all(local.reshape(-1, 4)))
    if path is not None and ranks.is_main:
        write_cached_reference(path, logps)
    barrier()  # the cache is complete before any rank goes on
    return logps
