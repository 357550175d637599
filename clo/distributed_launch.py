"""Starting the ranks of a training run: under torchrun, or as local processes.

- `torchrun --nproc-per-node N -m clo.distributed_launch job.json` trains one job over N
  processes (torchrun sets the env contract, clo.distributed); rank 0 writes the results.
- `run_ranks(target, N)` starts N local processes with the same contract and a file store
  for the rendezvous (no port to find), for tests and CPU measurements. A rank that fails
  ends the others at once (a rank waiting in a collective would otherwise wait for its
  timeout); a run past `timeout_s` is ended; no process outlives the call.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from clo.distributed import Ranks, gather_to_all, init_process_group
from clo.distributed_train import make_run, run_distributed

RankTarget = Callable[..., None]


def _rank_main(
    rank: int, world_size: int, init_method: str, target: RankTarget, args: tuple[Any, ...]
) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    try:
        ranks = init_process_group(init_method)
        target(ranks, *args)
        dist.destroy_process_group()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)  # the others are ended by run_ranks


def run_ranks(
    target: RankTarget,
    world_size: int,
    args: tuple[Any, ...] = (),
    *,
    timeout_s: float = 300.0,
    start_method: str = "fork",
) -> None:
    """Run `target(ranks, *args)` in `world_size` processes; raises if any rank fails.

    fork (the default) starts a rank without re-importing torch, which costs seconds per
    process; spawn needs a `target` importable by name.
    """
    context: Any = multiprocessing.get_context(start_method)
    with tempfile.TemporaryDirectory(prefix="clo-rendezvous-") as rendezvous:
        init_method = f"file://{Path(rendezvous) / 'store'}"
        procs = [
            context.Process(target=_rank_main, args=(r, world_size, init_method, target, args))
            for r in range(world_size)
        ]
        deadline = time.monotonic() + timeout_s
        try:
            for proc in procs:
                proc.start()
            waiting = list(procs)
            while waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"ranks still running after {timeout_s:.0f} s")
                multiprocessing.connection.wait([p.sentinel for p in waiting], timeout=left)
                for proc in [p for p in waiting if not p.is_alive()]:
                    waiting.remove(proc)
                    if proc.exitcode != 0:
                        raise RuntimeError(f"a rank failed (exit code {proc.exitcode})")
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                proc.join(timeout=10)


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_job(ranks: Ranks, job: dict[str, Any]) -> None:
    """Train `job` (model, revision, data, config, workdir; output_dir, reference_cache_dir
    and control optional) on this rank; rank 0 writes output_dir/final/weights.safetensors
    (the trained weights) and output_dir/result.json (default output_dir: workdir).

    `control` (clo.distributed_stage.RankControl, from the pipeline's training stage): rank
    0's progress goes to a file, a stop file stops every rank at the same step (result.json
    then says "stopped" and names the checkpoint), checkpoints follow the pipeline's fence.
    A CloError is also written for the pipeline to raise again (error-rank-N.json)."""
    from clo.checkpoint import latest_checkpoint
    from clo.distributed_stage import RankControl, write_error
    from clo.errors import CloError, Stopped

    workdir = Path(job["workdir"])
    output = Path(job.get("output_dir") or workdir)
    control = RankControl.from_job(job)
    stopped: dict[str, Any] | None = None
    try:
        with control.fenced() as fence:
            run = _make_run(ranks, job)
            try:
                result = run_distributed(run, control.progress, control.should_stop)
            except Stopped as exc:
                stopped = {"stopped": str(exc), "checkpoint": fence.saved if fence else None}
    except CloError as exc:
        write_error(output, ranks.rank, exc)
        raise
    if stopped is None:
        _write_outcome(ranks, run, result, output)
        return
    if stopped["checkpoint"] is None:  # unfenced, or FSDP2's (in ckpt_dir itself)
        stopped["checkpoint"] = latest_checkpoint(run.ckpt_dir)
    if ranks.is_main:
        (output / "result.json").write_text(json.dumps(stopped, default=str))
    torch.distributed.barrier()


def _make_run(ranks: Ranks, job: dict[str, Any]) -> Any:
    from clo.config import TrainConfig
    from clo.loading import load_model_and_tokenizer
    from clo.pairs import read_quadruples

    if not ranks.is_main:
        logging.getLogger("clo").setLevel(logging.WARNING)  # rank 0 alone logs progress
    # the one-process stage's loader (fp32, pad token fallback), on this rank's device
    model, tokenizer = load_model_and_tokenizer(
        job["model"], revision=job.get("revision"), device=ranks.device
    )
    cache = job.get("reference_cache_dir")
    return make_run(
        model,
        tokenizer,
        read_quadruples(Path(job["data"])),
        TrainConfig.model_validate(job["config"]),
        Path(job["workdir"]),
        Path(cache) if cache else None,
    )


def _write_outcome(ranks: Ranks, run: Any, result: Any, output: Path) -> None:
    from safetensors.torch import save_file

    from clo.distributed_model import full_state_dict, local_bytes, optimizer_state_bytes

    memory = {
        "optimizer_bytes": optimizer_state_bytes(run.optimizer),
        "parameter_bytes": sum(local_bytes(p) for p in run.model.parameters()),
        "trainable_bytes": sum(local_bytes(p) for _, p in run.named_params),
        "peak_rss_bytes": peak_rss_bytes(),
    }
    per_rank = gather_to_all(memory)
    if run.sharded:
        weights = full_state_dict(run.model)
    else:
        weights = {name: p.detach().cpu() for name, p in run.named_params}
    if ranks.is_main:
        (output / "final").mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in weights.items()},
            output / "final" / "weights.safetensors",
        )
        summary = {"metrics": result.metrics, "truncation": result.truncation, "ranks": per_rank}
        (output / "result.json").write_text(json.dumps(summary, indent=2))
    torch.distributed.barrier()


def main() -> None:
    """torchrun entry point: `python -m clo.distributed_launch job.json` on every rank."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    job = json.loads(Path(sys.argv[1]).read_text())
    ranks = init_process_group()
    try:
        run_job(ranks, job)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
