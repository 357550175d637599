"""The pipeline's training stage over N processes: torchrun runs clo.distributed_launch.

`train_over_ranks` (the pipeline's process) writes the stage's job file under
`train/ranks/`, starts `python -m torch.distributed.run --standalone --nproc-per-node N
-m clo.distributed_launch job.json` as a subprocess (one rank a GPU on CUDA, gloo
processes on CPU) and waits for it, while it
- forwards rank 0's per-step progress (JSON lines in `progress.jsonl`) to the stage's hook,
  checkpoint events too (the worker commits those under its lease);
- turns the stage's `should_stop()` into a `stop` file that rank 0 reads before each step
  (every rank then stops at the same step and checkpoints, clo.distributed_train);
- hands its checkpoint fence (clo.checkpoint: the lease's owner folder and the committed
  checkpoint) to every rank, so a resumed attempt reads and writes where one process would.
When the ranks finish, rank 0 has written the trained weights; this process loads the base
model, applies the trainable set (PEFT for lora) and copies them in, so export, evaluation
and packaging go on in-process from a model exactly as the one-process trainer leaves it.

The ranks' side (`RankControl`) is used by clo.distributed_launch.run_job. A CloError on a
rank comes back as the same CloError (code, param); Stopped as Stopped; any other failure as
a RuntimeError with the tail of the ranks' log (`ranks/ranks.log`, kept on failure).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clo.checkpoint import CheckpointFence, current_fence, fenced_checkpoints
from clo.config import TrainConfig
from clo.errors import CloError, Stopped
from clo.pairs import Quadruple, write_quadruples
from clo.trainer import TrainResult

CONTROL = "ranks"
POLL_SECONDS = 0.5
WEIGHTS = "weights.safetensors"


def rank_config(config: TrainConfig, processes: int) -> TrainConfig:
    """Each rank's config: the job's batch_size is the global micro-batch (resolve checked
    that it splits), so the run equals one process with the same global batch."""
    if config.batch_size % processes:
        raise CloError(
            f"batch_size {config.batch_size} does not split over {processes} processes",
            code="batch_size_not_divisible",
            param="gpus",
        )
    return config.model_copy(update={"batch_size": config.batch_size // processes})


def _check_devices(processes: int) -> None:
    if torch.cuda.is_available() and processes > torch.cuda.device_count():
        raise CloError(
            f"gpus {processes}: this worker sees {torch.cuda.device_count()} CUDA devices",
            code="too_many_gpus",
            param="gpus",
        )


def train_over_ranks(
    model_source: str,
    revision: str | None,
    train_quads: Sequence[Quadruple],
    config: TrainConfig,
    out_dir: Path,
    processes: int,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | torch.device | None = None,
) -> tuple[TrainResult, Any]:
    """Train over `processes` ranks in a torchrun subprocess; (result, tokenizer) as
    clo.trainer.train would leave them (module doc). `out_dir` is the stage's folder:
    checkpoints and the reference cache go where one process puts them."""
    _check_devices(processes)
    ctl = Path(out_dir) / CONTROL
    shutil.rmtree(ctl, ignore_errors=True)  # an earlier attempt's outcome is not this one's
    ctl.mkdir(parents=True)
    write_quadruples(ctl / "train.jsonl", list(train_quads))
    fence = current_fence()
    job = {
        "model": model_source,
        "revision": revision,
        "data": str(ctl / "train.jsonl"),
        "config": rank_config(config, processes).model_dump(mode="json"),
        "workdir": str(out_dir),
        "output_dir": str(ctl),
        "reference_cache_dir": str(Path(out_dir) / "reference"),
        "control": {
            "progress_file": str(ctl / "progress.jsonl"),
            "stop_file": str(ctl / "stop"),
            "fence": None
            if fence is None
            else {
                "owner": fence.owner,
                "committed": None if fence.committed is None else str(fence.committed),
            },
        },
    }
    (ctl / "job.json").write_text(json.dumps(job, indent=2))
    _run_torchrun(ctl, processes, progress, should_stop)
    outcome = json.loads((ctl / "result.json").read_text())
    if "stopped" in outcome:
        if fence is not None and outcome.get("checkpoint"):
            fence.saved = Path(outcome["checkpoint"])  # the worker commits it on release
        raise Stopped(outcome["stopped"])
    result, tokenizer = _trained_model(
        model_source, revision, config, ctl / "final" / WEIGHTS, device
    )
    result.metrics = outcome["metrics"]
    result.truncation = outcome["truncation"]
    result.steps = int(outcome["metrics"].get("train_steps", 0))
    shutil.rmtree(ctl, ignore_errors=True)  # weights loaded; the export supersedes them
    return result, tokenizer


def _run_torchrun(
    ctl: Path,
    processes: int,
    progress: Callable[[dict[str, Any]], None] | None,
    should_stop: Callable[[], bool] | None,
) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "clo.distributed_launch",
        str(ctl / "job.json"),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default; said so, not warned
    progress_file, stop_file = ctl / "progress.jsonl", ctl / "stop"
    read = 0
    with open(ctl / "ranks.log", "wb") as log:
        # its own session: one signal ends torchrun and its ranks, never this process
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            while True:
                code = proc.poll()
                read = _forward(progress_file, read, progress)
                if code is not None:
                    break
                if should_stop is not None and not stop_file.exists() and should_stop():
                    stop_file.touch()
                time.sleep(POLL_SECONDS)
        finally:
            if proc.poll() is None:  # this process is leaving (an exception): the ranks too
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    if code != 0:
        _raise_failure(ctl, processes, code)


def _forward(path: Path, offset: int, progress: Callable[[dict[str, Any]], None] | None) -> int:
    """Hand on the complete lines rank 0 appended since `offset`; the new offset."""
    if not path.exists():
        return offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
    for line in data[:end].splitlines():
        if progress is not None and line.strip():
            progress(json.loads(line))
    return offset + end


def _raise_failure(ctl: Path, processes: int, code: int) -> None:
    errors = sorted(ctl.glob("error-rank-*.json"))
    if errors:
        error = json.loads(errors[0].read_text())
        raise CloError(error["message"], code=error["code"], param=error["param"])
    tail = (ctl / "ranks.log").read_text(errors="replace")[-3000:]
    raise RuntimeError(f"training over {processes} processes failed (exit code {code}):\n{tail}")


def _trained_model(
    source: str,
    revision: str | None,
    config: TrainConfig,
    weights_path: Path,
    device: str | torch.device | None,
) -> tuple[TrainResult, Any]:
    """The base model with the trainable set applied and the ranks' weights copied in."""
    from safetensors.torch import load_file

    from clo.loading import load_model_and_tokenizer
    from clo.trainable import apply_trainable, trainable_parameters

    model, tokenizer = load_model_and_tokenizer(source, revision=revision, device=device)
    model = apply_trainable(model, config)
    weights = load_file(str(weights_path))
    if config.trainable == "full":
        missing, unexpected = model.load_state_dict(weights, strict=False)
        tied = set(getattr(model, "_tied_weights_keys", None) or ())
        if unexpected or set(missing) - tied:
            raise RuntimeError(f"weights do not fit the model: {missing=} {unexpected=}")
    else:
        params = dict(trainable_parameters(model))
        if set(params) != set(weights):
            raise RuntimeError("the ranks' trainable parameters are not the model's")
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(weights[name])
    model.eval()
    return TrainResult(model=model, steps=0, metrics={}, truncation={}), tokenizer


# ---- the ranks' side (clo.distributed_launch.run_job) --------------------------------


@dataclass(frozen=True)
class RankControl:
    """What the pipeline's process hands a rank: where progress goes, the stop signal, the
    checkpoint fence."""

    progress_file: Path | None = None
    stop_file: Path | None = None
    fence: dict[str, Any] | None = None

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> RankControl:
        control = job.get("control") or {}
        progress, stop = control.get("progress_file"), control.get("stop_file")
        return cls(
            progress_file=Path(progress) if progress else None,
            stop_file=Path(stop) if stop else None,
            fence=control.get("fence"),
        )

    def progress(self, event: dict[str, Any]) -> None:
        if self.progress_file is None:
            return
        with open(self.progress_file, "a") as f:
            f.write(json.dumps(event, default=str) + "\n")

    def should_stop(self) -> bool:
        return self.stop_file is not None and self.stop_file.exists()

    @contextlib.contextmanager
    def fenced(self) -> Iterator[CheckpointFence | None]:
        """The pipeline's fence on this rank: checkpoints read and written in the lease's
        owner folder. Writes need no lease check here: a rank left running after its lease
        was lost writes only its own owner folder, which no later holder reads, and the
        commit point is the pipeline process's lease write of the checkpoint event."""
        if self.fence is None:
            yield None
            return
        committed = self.fence.get("committed")
        fence = CheckpointFence(
            owner=self.fence["owner"],
            may_write=lambda: True,
            committed=Path(committed) if committed else None,
        )
        with fenced_checkpoints(fence):
            yield fence


def write_error(output_dir: Path, rank: int, exc: CloError) -> None:
    """A rank's CloError, for the pipeline's process to raise again (code and param kept)."""
    error = {"message": str(exc), "code": exc.code, "param": exc.param}
    (output_dir / f"error-rank-{rank}.json").write_text(json.dumps(error))
