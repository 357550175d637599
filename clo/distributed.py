"""The process group of a multi-process training run, and the few collectives it needs.

The env contract is torchrun's: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
`init_method` may name a file store instead (file:///path), which needs no free port: the
tests and the local launcher (clo.distributed_launch) use one. gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from clo.errors import CloError, Stopped

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run, and the device its rank computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_process_group(init_method: str | None = None, timeout_s: float = 600.0) -> Ranks:
    """Join the run's process group from the torchrun environment (once per process)."""
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        from datetime import timedelta

        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            init_method=init_method or "env://",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
        )
    return Ranks(rank, world_size, local_rank, device)


def current_ranks() -> Ranks:
    """The Ranks of an initialised process group."""
    if not dist.is_initialized():
        raise RuntimeError("no process group: call clo.distributed.init_process_group first")
    rank = dist.get_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return Ranks(rank, dist.get_world_size(), local_rank, device)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of rank's contiguous share of n items; shares differ by at most one."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def broadcast_from_main(value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object)."""
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    result: T = box[0]
    return result


def gather_to_all(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank (any picklable object)."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def all_agree(flag: bool) -> bool:
    """True on every rank when `flag` holds on every rank (so all take the same branch)."""
    return all(gather_to_all(flag))


def barrier() -> None:
    dist.barrier()


def main_writes(write: Callable[[], Path]) -> Path:
    """Run `write` on rank 0 while the others wait; every rank returns its path or raises."""
    outcome: tuple[str, str] = ("", "")
    error: BaseException | None = None
    if current_ranks().is_main:
        try:
            outcome = ("ok", str(write()))
        except BaseException as exc:  # reported to every rank, then re-raised here
            error = exc
            outcome = ("stopped" if isinstance(exc, Stopped) else "failed", str(exc))
    kind, value = broadcast_from_main(outcome)
    if error is not None:
        raise error
    if kind == "stopped":
        raise Stopped(f"rank 0 stopped while writing: {value}")
    if kind == "failed":
        raise CloError(f"rank 0 failed to write: {value}")
    return Path(value)
