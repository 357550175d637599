"""The local launcher: ranks meet, a failing rank ends the others, a hung run is ended,
and no rank process outlives the call."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from clo.distributed import Ranks, broadcast_from_main, gather_to_all, shard_bounds
from clo.distributed_launch import run_ranks


def rank_target(ranks: Ranks, out: Path, mode: str) -> None:
    (out / f"pid-{ranks.rank}").write_text(str(os.getpid()))
    assert broadcast_from_main(f"from rank {ranks.rank}") == "from rank 0"
    assert gather_to_all(ranks.rank) == list(range(ranks.world_size))
    if ranks.rank == 1 and mode == "fail":
        raise RuntimeError("rank 1 fails")
    if ranks.rank == 1 and mode == "hang":
        time.sleep(120)
    dist.barrier()  # rank 0 waits here for a rank that failed or hangs
    (out / f"done-{ranks.rank}").touch()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def rank_pids(out: Path) -> list[int]:
    return [int(p.read_text()) for p in sorted(out.glob("pid-*"))]


def test_ranks_meet_and_finish(tmp_path: Path) -> None:
    run_ranks(rank_target, 2, (tmp_path, "ok"), timeout_s=60)
    assert {p.name for p in tmp_path.glob("done-*")} == {"done-0", "done-1"}
    assert len(rank_pids(tmp_path)) == 2 and not any(alive(p) for p in rank_pids(tmp_path))


def test_a_failing_rank_ends_the_others_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="a rank failed"):
        run_ranks(rank_target, 2, (tmp_path, "fail"), timeout_s=120)
    assert time.monotonic() - started < 60  # not rank 0's wait for its collective timeout
    assert not list(tmp_path.glob("done-*"))
    assert len(rank_pids(tmp_path)) == 2 and not any(alive(p) for p in rank_pids(tmp_path))


def test_a_hung_run_is_ended_at_its_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run_ranks(rank_target, 2, (tmp_path, "hang"), timeout_s=3)
    assert time.monotonic() - started < 30
    assert not any(alive(p) for p in rank_pids(tmp_path))


def test_shares_cover_every_item_once_and_differ_by_at_most_one() -> None:
    for n in (0, 1, 5, 8):
        for world in (1, 2, 3):
            bounds = [shard_bounds(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            sizes = [end - start for start, end in bounds]
            assert max(sizes) - min(sizes) <= 1
