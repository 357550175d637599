"""Resume on another host: two workers with their own data and work folders and no shared
artifact folder, the object store (moto_server on loopback) the only thing they share with
the API. Worker A is SIGKILLed mid-training after a committed checkpoint and its work folder
deleted; worker B downloads the committed checkpoint (and the reference log-prob cache) from
the store and finishes the job once."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import boto3
import httpx
import pytest

from tests.reliability.harness import (
    TERMINAL,
    api_key_for,
    artifact_names,
    event_types,
    job_row,
    metric_steps,
    outcomes,
    record,
    stack_env,
    submit,
    train_spec,
    wait_finished,
    wait_until,
)
from tests.support.moto_s3 import MotoS3, moto_s3, s3_prefix  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow

CHECKPOINT_EVERY = 3
TOTAL_STEPS = 150  # a wide window: the kill lands long before training ends


def _host(root: Path, data_dir: Path) -> dict[str, str]:
    """A worker host's own folders; only the model files are the same (each host has them)."""
    root.mkdir()
    (root / "models").symlink_to((data_dir / "models").resolve(), target_is_directory=True)
    return {"CLO_DATA_DIR": str(root), "CLO_WORK_DIR": str(root / "work")}


def _stored_keys(s3: MotoS3, prefix: str, job_id: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=s3.endpoint_url)
    listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=f"{prefix}/")
    return sorted(o["Key"].removeprefix(f"{prefix}/") for o in listed.get("Contents", []))


def test_sigkilled_job_resumes_on_another_host_from_the_store(
    factory,
    pg_url,
    data_dir,
    make_stack,
    tmp_path,
    moto_s3: MotoS3,  # noqa: F811
    s3_prefix: str,  # noqa: F811
):
    env = stack_env(
        pg_url, data_dir, CLO_PROGRESS_INTERVAL_SECONDS="0.001", **moto_s3.env(s3_prefix)
    )
    stack = make_stack(env)
    host_a, host_b = _host(tmp_path / "host-a", data_dir), _host(tmp_path / "host-b", data_dir)
    stack.start(workers=(), wait_ready=False)
    stack.start_worker("w1", host_a)
    key = api_key_for(factory)
    headers = {"Authorization": f"Bearer {key}"}
    seed = b"".join(
        json.dumps({"prompt": f"What is {i} plus {i}?", "response": f"It is {2 * i}."}).encode()
        + b"\n"
        for i in range(12)
    )
    uploaded = httpx.post(f"{stack.base}/v1/files", files={"file": ("seed.jsonl", seed)},
                          headers=headers, timeout=30).json()  # fmt: skip
    spec = train_spec(
        TOTAL_STEPS,
        CHECKPOINT_EVERY,
        data_size=8,
        seed_data={"source": "file", "file_id": uploaded["id"]},
        translator={"model": "tiny-m2m100", "num_beams": 1, "quality_check": "off"},
    )
    job_id = submit(stack.base, key, spec)

    def checkpointed():
        row = job_row(factory, job_id)
        assert row.status not in TERMINAL, (row, stack.tail())
        return row if (row.checkpoint_step or 0) >= CHECKPOINT_EVERY else None

    at_kill = wait_until(checkpointed, 240, "first committed checkpoint", context=stack.tail)
    stack.kill("w1")
    killed_at = time.monotonic()
    before_restart = set(metric_steps(factory, job_id))
    trained_before = max(step for step, _ in before_restart)
    # Host A's disk is scratch: the committed checkpoint is in the store.
    committed = [k for k in _stored_keys(moto_s3, s3_prefix, job_id) if "/checkpoints/" in k]
    assert len(committed) == 1 and committed[0].startswith(f"jobs/{job_id}/checkpoints/owner-")
    shutil.rmtree(host_a["CLO_WORK_DIR"])

    wait_until(
        lambda: job_row(factory, job_id).status == "queued",
        60,
        "reaper requeues the job",
        context=stack.tail,
    )
    stack.start_worker("w2", host_b)
    final = wait_finished(factory, job_id, 300, "job finishes on host B", stack)
    recovered_s = time.monotonic() - killed_at
    assert final.status == "succeeded", (final.error, stack.tail())
    assert final.attempt == 2

    w2 = stack.log("w2")
    assert "downloaded from the store" in w2, stack.tail()
    resumed = re.search(r"resumed from (\S+) at step (\d+)", w2)
    assert resumed, stack.tail()
    assert resumed.group(1).startswith(host_b["CLO_WORK_DIR"])  # B's own folder
    resume_step = int(resumed.group(2))
    assert resume_step % CHECKPOINT_EVERY == 0
    assert at_kill.checkpoint_step <= resume_step <= trained_before
    steps_redone = trained_before - resume_step
    assert 0 <= steps_redone <= CHECKPOINT_EVERY, (trained_before, resume_step)
    steps = metric_steps(factory, job_id)
    assert [s for s, _ in steps] == list(range(1, TOTAL_STEPS + 1))  # each step's row once
    assert "reference log-probs loaded from cache" in w2  # the cache came from the store

    types = event_types(factory, job_id)
    assert types.count("succeeded") == 1 and types[-1] == "succeeded"
    assert artifact_names(factory, job_id) == ["adapter.tar"]
    # The bucket holds the adapter once, the upload, no checkpoints or caches once done,
    # and nothing half-written; no host wrote an artifact folder.
    # The holder commits the status first, then removes its checkpoints and scratch folder,
    # so on a loaded machine the clean-up can trail the status by a moment: wait for it.
    scratch = Path(host_b["CLO_WORK_DIR"]) / job_id

    def cleaned_up() -> list[str] | None:
        keys = _stored_keys(moto_s3, s3_prefix, job_id)
        mine = [k for k in keys if k.startswith(f"jobs/{job_id}/")]
        return keys if mine == [f"jobs/{job_id}/adapter.tar"] and not scratch.exists() else None

    keys = wait_until(cleaned_up, 30, "checkpoints and scratch removed", context=stack.tail)
    assert not any(k.startswith(".staging/") for k in keys)
    for folder in (data_dir, tmp_path / "host-a", tmp_path / "host-b"):
        assert not (folder / "artifacts").exists()
    record(
        "sigkill worker, resume on another host (object store)",
        **outcomes(factory, [job_id]),
        checkpoint_every=CHECKPOINT_EVERY,
        trained_before_kill=trained_before,
        resumed_at=resume_step,
        steps_redone=steps_redone,
        recover_s=round(recovered_s, 1),
    )
